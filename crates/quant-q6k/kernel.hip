// Q6_K dequantization kernels (HIP and CUDA, one source).
//
// Super-block (210 bytes, 256 values): ql[128] (low 4 bits), qh[64] (high 2 bits),
// scales[16] (int8), d (f16). Values come in two halves of 128; in half n, for l in 0..31:
//     y[l]      from ql[64n + l]      low nibble,  qh[32n + l] bits 0-1, scale 8n + l/16 + 0
//     y[l + 32] from ql[64n + l + 32] low nibble,  qh[32n + l] bits 2-3, scale 8n + l/16 + 2
//     y[l + 64] from ql[64n + l]      high nibble, qh[32n + l] bits 4-5, scale 8n + l/16 + 4
//     y[l + 96] from ql[64n + l + 32] high nibble, qh[32n + l] bits 6-7, scale 8n + l/16 + 6
// with q = (nibble | bits << 4) - 32 and, as ggml computes it, y = (d * scale) * q, rounded
// after each multiplication.
//
// Work split: a group stages Q6_K_BPG super-blocks (Q6_K_BPG * 210 bytes, a multiple of 16) in
// shared memory with 16-byte loads and computes d * scale for each of their 16 scales once.
// Then each thread takes E consecutive l of one half (E = 4 values for f32, 8 for f16/bf16),
// reads ql[l], ql[l + 32] and qh[l] once, and writes the four 16-byte vectors at l, l + 32,
// l + 64 and l + 96; neighbouring threads write neighbouring vectors, so each store
// instruction fills whole 32-byte sectors. Groups stride over the tensor, so any grid size works.
#include "qf_portability.h"

#define Q6_K_BB 210u  // bytes per super-block
#define Q6_K_QK 256u  // values per super-block
#ifndef Q6_K_BPG  // overridable for tuning experiments (-DQ6_K_BPG=...)
#define Q6_K_BPG 32u  // super-blocks staged per group iteration (check_contract holds src/kernel.rs to it)
#endif

template <int OUT>
QF_DEVICE void q6_k_dequant(const uint8_t* __restrict__ src, qf_v16* __restrict__ dst,
                            uint64_t n_blocks) {
    __shared__ qf_v16 stage[Q6_K_BPG * Q6_K_BB / 16u];
    __shared__ float dsc[Q6_K_BPG * 16u];  // d * scale[k] of each staged super-block
    const uint8_t* s8 = (const uint8_t*)stage;
    const uint16_t* s16 = (const uint16_t*)stage;
    const uint32_t E = QF_PER_VEC(OUT);   // values per 16-byte vector
    const uint32_t VPB = Q6_K_QK / E;     // vectors per super-block
    // A work unit is E consecutive l of one half n: it reads ql[l], ql[l + 32] and qh[l] once
    // and writes the four vectors y[l], y[l + 32], y[l + 64], y[l + 96] of that half.
    const uint32_t LPH = 32u / E;         // units per half
    const uint32_t UPB = 2u * LPH;        // units per super-block
    const uint64_t n_groups = (n_blocks + Q6_K_BPG - 1u) / Q6_K_BPG;

    for (uint64_t g = blockIdx.x; g < n_groups; g += gridDim.x) {
        const uint64_t first = g * Q6_K_BPG;
        const uint32_t nb = (uint32_t)qf_min_u64(n_blocks - first, Q6_K_BPG);
        qf_stage(stage, src + first * Q6_K_BB, nb * Q6_K_BB);
        __syncthreads();
        // d * scale once per 16-value scale group (ggml's first multiplication).
        for (uint32_t i = threadIdx.x; i < nb * 16u; i += blockDim.x) {
            const uint32_t base = (i / 16u) * Q6_K_BB;
            const float d = qf_f16_to_f32(s16[(base + 208u) / 2u]);
            const int32_t scale = (int8_t)s8[base + 192u + i % 16u];
            dsc[i] = QF_MUL(d, (float)scale);
        }
        __syncthreads();

        qf_v16* __restrict__ out = dst + first * VPB;
        const uint32_t units = nb * UPB;
        for (uint32_t u = threadIdx.x; u < units; u += blockDim.x) {
            const uint32_t blk = u / UPB;
            const uint32_t n = (u % UPB) / LPH;        // half
            const uint32_t l = (u % LPH) * E;          // 0..31, multiple of 4
            const uint32_t base = blk * Q6_K_BB;       // even
            const uint32_t ql_off = base + 64u * n + l;
            const uint32_t qh_off = base + 128u + 32u * n + l;
            const float* ds = dsc + blk * 16u + 8u * n + l / 16u;  // + 2 * quarter
            float v0[8], v1[8], v2[8], v3[8];
#pragma unroll
            for (uint32_t w = 0; w < E / 4u; ++w) {
                const uint32_t a = qf_ld_u32_even(s16, ql_off + 4u * w);        // ql[l..]
                const uint32_t b = qf_ld_u32_even(s16, ql_off + 32u + 4u * w);  // ql[l+32..]
                const uint32_t h = qf_ld_u32_even(s16, qh_off + 4u * w);        // qh[l..]
                const uint32_t q0 = (a & 0x0F0F0F0Fu) | ((h & 0x03030303u) << 4);
                const uint32_t q1 = (b & 0x0F0F0F0Fu) | ((h & 0x0C0C0C0Cu) << 2);
                const uint32_t q2 = ((a >> 4) & 0x0F0F0F0Fu) | (h & 0x30303030u);
                const uint32_t q3 = ((b >> 4) & 0x0F0F0F0Fu) | ((h >> 2) & 0x30303030u);
                // ggml: (d * scale) * (q - 32)
#define Q6K_QUAD(V, Q, DS)                                                        \
    V[4u * w + 0u] = QF_MUL(DS, qf_magic_minus<32u>(qf_magic_byte<0u>(Q)));      \
    V[4u * w + 1u] = QF_MUL(DS, qf_magic_minus<32u>(qf_magic_byte<1u>(Q)));      \
    V[4u * w + 2u] = QF_MUL(DS, qf_magic_minus<32u>(qf_magic_byte<2u>(Q)));      \
    V[4u * w + 3u] = QF_MUL(DS, qf_magic_minus<32u>(qf_magic_byte<3u>(Q)));
                Q6K_QUAD(v0, q0, ds[0])
                Q6K_QUAD(v1, q1, ds[2])
                Q6K_QUAD(v2, q2, ds[4])
                Q6K_QUAD(v3, q3, ds[6])
#undef Q6K_QUAD
            }
            qf_v16* o = out + blk * VPB + (128u * n + l) / E;
            o[0] = qf_pack<OUT>(v0);
            o[32u / E] = qf_pack<OUT>(v1);
            o[64u / E] = qf_pack<OUT>(v2);
            o[96u / E] = qf_pack<OUT>(v3);
        }
        __syncthreads();
    }
}

QF_EXTERN_C QF_GLOBAL void q6_k_to_fp32_kernel(const uint8_t* src, float* dst, uint64_t n_blocks) {
    q6_k_dequant<QF_OUT_F32>(src, (qf_v16*)dst, n_blocks);
}

QF_EXTERN_C QF_GLOBAL void q6_k_to_fp16_kernel(const uint8_t* src, uint16_t* dst,
                                               uint64_t n_blocks) {
    q6_k_dequant<QF_OUT_F16>(src, (qf_v16*)dst, n_blocks);
}

QF_EXTERN_C QF_GLOBAL void q6_k_to_bf16_kernel(const uint8_t* src, uint16_t* dst,
                                               uint64_t n_blocks) {
    q6_k_dequant<QF_OUT_BF16>(src, (qf_v16*)dst, n_blocks);
}
