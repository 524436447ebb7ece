// Q4_K dequantization kernels (HIP and CUDA, one source).
//
// Super-block (144 bytes, 256 values): d (f16), dmin (f16), scales[12] (eight 6-bit scales and
// eight 6-bit mins, packed as ggml's get_scale_min_k4 reads them), qs[128] (4-bit quants).
// Values come in four chunks of 64: chunk c uses qs[32c .. 32c+31], its first 32 values the low
// nibbles with scale/min pair 2c, the next 32 the high nibbles with pair 2c+1. ggml computes,
// in this order and with a rounding after each operation:
//     d1 = d * sc;  m1 = dmin * m;  y = d1 * q - m1
//
// Work split: a group stages Q4_K_BPG super-blocks (144 bytes each, a multiple of 16) into
// shared memory with 16-byte loads and computes (d1, m1) of their 8 sub-blocks once. Then each
// thread takes E consecutive quant bytes of one chunk (E = 4 for f32, 8 for f16/bf16), reads
// them once, and writes the low-nibble and the high-nibble 16-byte vectors; neighbouring threads
// write neighbouring vectors, so each store instruction fills whole 32-byte sectors. Groups
// stride over the tensor, so any grid size works.
#include "qf_portability.h"

#define Q4_K_BB 144u  // bytes per super-block
#define Q4_K_QK 256u  // values per super-block
#ifndef Q4_K_BPG  // overridable for tuning experiments (-DQ4_K_BPG=...)
#define Q4_K_BPG 32u  // super-blocks staged per group iteration (check_contract holds src/kernel.rs to it)
#endif

// ggml's get_scale_min_k4 on the 12 scale bytes held in three little-endian words.
QF_DEVICE void q4_k_scale_min(uint32_t j, const uint8_t* sc, uint32_t* s, uint32_t* m) {
    if (j < 4u) {
        *s = sc[j] & 63u;
        *m = sc[j + 4u] & 63u;
    } else {
        *s = (sc[j + 4u] & 0xFu) | ((sc[j - 4u] >> 6) << 4);
        *m = (sc[j + 4u] >> 4) | ((sc[j] >> 6) << 4);
    }
}

template <int OUT>
QF_DEVICE void q4_k_dequant(const uint8_t* __restrict__ src, qf_v16* __restrict__ dst,
                            uint64_t n_blocks) {
    __shared__ qf_v16 stage[Q4_K_BPG * Q4_K_BB / 16u];
    __shared__ float dm[Q4_K_BPG * 8u * 2u];  // (d1, m1) of each 32-value sub-block
    const uint8_t* s8 = (const uint8_t*)stage;
    const uint16_t* s16 = (const uint16_t*)stage;
    const uint32_t* s32 = (const uint32_t*)stage;
    const uint32_t E = QF_PER_VEC(OUT);   // values per 16-byte vector
    const uint32_t VPB = Q4_K_QK / E;     // vectors per super-block
    // A work unit is E consecutive l of one 64-value chunk c: it reads qs[32c + l ..] once and
    // writes the low-nibble vector at 64c + l and the high-nibble vector at 64c + 32 + l.
    const uint32_t LPC = 32u / E;         // units per chunk
    const uint32_t UPB = 4u * LPC;        // units per super-block
    const uint64_t n_groups = (n_blocks + Q4_K_BPG - 1u) / Q4_K_BPG;

    for (uint64_t g = blockIdx.x; g < n_groups; g += gridDim.x) {
        const uint64_t first = g * Q4_K_BPG;
        const uint32_t nb = (uint32_t)qf_min_u64(n_blocks - first, Q4_K_BPG);
        qf_stage(stage, src + first * Q4_K_BB, nb * Q4_K_BB);
        __syncthreads();
        // Per sub-block scale and min, once: d1 = d * sc, m1 = dmin * m (ggml's order).
        for (uint32_t i = threadIdx.x; i < nb * 8u; i += blockDim.x) {
            const uint32_t base = (i / 8u) * Q4_K_BB;
            const float d = qf_f16_to_f32(s16[base / 2u]);
            const float dmin = qf_f16_to_f32(s16[base / 2u + 1u]);
            uint32_t sc, m;
            q4_k_scale_min(i % 8u, s8 + base + 4u, &sc, &m);
            dm[2u * i] = QF_MUL(d, (float)sc);
            dm[2u * i + 1u] = QF_MUL(dmin, (float)m);
        }
        __syncthreads();

        qf_v16* __restrict__ out = dst + first * VPB;
        const uint32_t units = nb * UPB;
        for (uint32_t u = threadIdx.x; u < units; u += blockDim.x) {
            const uint32_t blk = u / UPB;
            const uint32_t c = (u % UPB) / LPC;   // chunk of 64 values
            const uint32_t l = (u % LPC) * E;     // 0..31, multiple of 4
            const uint32_t sub = blk * 8u + 2u * c;
            const float d1 = dm[2u * sub], m1 = dm[2u * sub + 1u];            // low nibbles
            const float d2 = dm[2u * sub + 2u], m2 = dm[2u * sub + 3u];       // high nibbles
            const uint32_t qword = (blk * Q4_K_BB + 16u + 32u * c + l) / 4u;
            float lo[8], hi[8];
#pragma unroll
            for (uint32_t w = 0; w < E / 4u; ++w) {
                const uint32_t q = s32[qword + w];
                const uint32_t ql = q & 0x0F0F0F0Fu;
                const uint32_t qh = (q >> 4) & 0x0F0F0F0Fu;
                // ggml: d1 * q - m1
                lo[4u * w + 0u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<0u>(ql))), m1);
                lo[4u * w + 1u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<1u>(ql))), m1);
                lo[4u * w + 2u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<2u>(ql))), m1);
                lo[4u * w + 3u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<3u>(ql))), m1);
                hi[4u * w + 0u] = QF_SUB(QF_MUL(d2, qf_magic_minus<0u>(qf_magic_byte<0u>(qh))), m2);
                hi[4u * w + 1u] = QF_SUB(QF_MUL(d2, qf_magic_minus<0u>(qf_magic_byte<1u>(qh))), m2);
                hi[4u * w + 2u] = QF_SUB(QF_MUL(d2, qf_magic_minus<0u>(qf_magic_byte<2u>(qh))), m2);
                hi[4u * w + 3u] = QF_SUB(QF_MUL(d2, qf_magic_minus<0u>(qf_magic_byte<3u>(qh))), m2);
            }
            qf_v16* o = out + blk * VPB + (64u * c + l) / E;
            o[0] = qf_pack<OUT>(lo);
            o[32u / E] = qf_pack<OUT>(hi);
        }
        __syncthreads();
    }
}

QF_EXTERN_C QF_GLOBAL void q4_k_to_fp32_kernel(const uint8_t* src, float* dst, uint64_t n_blocks) {
    q4_k_dequant<QF_OUT_F32>(src, (qf_v16*)dst, n_blocks);
}

QF_EXTERN_C QF_GLOBAL void q4_k_to_fp16_kernel(const uint8_t* src, uint16_t* dst,
                                               uint64_t n_blocks) {
    q4_k_dequant<QF_OUT_F16>(src, (qf_v16*)dst, n_blocks);
}

QF_EXTERN_C QF_GLOBAL void q4_k_to_bf16_kernel(const uint8_t* src, uint16_t* dst,
                                               uint64_t n_blocks) {
    q4_k_dequant<QF_OUT_BF16>(src, (qf_v16*)dst, n_blocks);
}
