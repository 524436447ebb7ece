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
// shared memory with 16-byte loads; each thread then produces one 16-byte output vector at a
// time (4 f32 or 8 f16/bf16 values) with one 16-byte store, consecutive threads writing
// consecutive vectors. Groups stride over the tensor, so any grid size works.
#include "qf_portability.h"

#define Q6_K_BB 210u  // bytes per super-block
#define Q6_K_QK 256u  // values per super-block
#define Q6_K_BPG 32u  // super-blocks staged per group iteration (keep in sync with src/kernel.rs)

template <int OUT>
QF_DEVICE void q6_k_dequant(const uint8_t* __restrict__ src, qf_v16* __restrict__ dst,
                            uint64_t n_blocks) {
    __shared__ qf_v16 stage[Q6_K_BPG * Q6_K_BB / 16u];
    __shared__ float dsc[Q6_K_BPG * 16u];  // d * scale[k] of each staged super-block
    const uint8_t* s8 = (const uint8_t*)stage;
    const uint16_t* s16 = (const uint16_t*)stage;
    const uint32_t E = QF_PER_VEC(OUT);   // values per 16-byte vector
    const uint32_t UPB = Q6_K_QK / E;     // vectors per super-block
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

        qf_v16* __restrict__ out = dst + first * UPB;
        const uint32_t units = nb * UPB;
        for (uint32_t u = threadIdx.x; u < units; u += blockDim.x) {
            const uint32_t blk = u / UPB;
            const uint32_t p = (u % UPB) * E;   // first value of the vector, 0..255
            const uint32_t n = p / 128u;        // half
            const uint32_t quarter = (p % 128u) / 32u;
            const uint32_t l = p % 32u;         // multiple of 4: all E values share l / 16
            const uint32_t base = blk * Q6_K_BB;  // even
            const float ds = dsc[blk * 16u + 8u * n + l / 16u + 2u * quarter];

            const uint32_t ql_off = base + 64u * n + 32u * (quarter & 1u) + l;  // even
            const uint32_t qh_off = base + 128u + 32u * n + l;                  // even
            const uint32_t ql_shift = 4u * (quarter >> 1);
            const uint32_t qh_shift = 2u * quarter;
            float v[8];
#pragma unroll
            for (uint32_t w = 0; w < E / 4u; ++w) {
                const uint32_t lo4 = (qf_ld_u32_even(s16, ql_off + 4u * w) >> ql_shift) & 0x0F0F0F0Fu;
                const uint32_t hi4 = (qf_ld_u32_even(s16, qh_off + 4u * w) >> qh_shift) & 0x03030303u;
                const uint32_t q4 = lo4 | (hi4 << 4);  // four 6-bit quants
                // ggml: (d * scale) * (q - 32)
                v[4u * w + 0u] = QF_MUL(ds, qf_magic_minus<32u>(qf_magic_byte<0u>(q4)));
                v[4u * w + 1u] = QF_MUL(ds, qf_magic_minus<32u>(qf_magic_byte<1u>(q4)));
                v[4u * w + 2u] = QF_MUL(ds, qf_magic_minus<32u>(qf_magic_byte<2u>(q4)));
                v[4u * w + 3u] = QF_MUL(ds, qf_magic_minus<32u>(qf_magic_byte<3u>(q4)));
            }
            out[u] = qf_pack<OUT>(v);
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
