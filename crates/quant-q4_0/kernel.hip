// Q4_0 dequantization kernels (HIP and CUDA, one source).
//
// Block (18 bytes, 32 values): d (f16, little-endian) then qs[16]; value j (0..15) is
// (qs[j] & 0xF) - 8, value j + 16 is (qs[j] >> 4) - 8, each times d. ggml computes
// y = (float)(q - 8) * d with one rounding; so do we.
//
// Work split: a group of threads stages Q4_0_BPG blocks (Q4_0_BPG * 18 bytes, a multiple of 16)
// into shared memory with 16-byte loads, then each thread produces 16 bytes of output at a
// time (4 f32 or 8 f16/bf16 values) and writes them with one 16-byte store; consecutive
// threads write consecutive vectors. Groups stride over the tensor, so any grid size works.
#include "qf_portability.h"

#define Q4_0_BB 18u    // bytes per block
#define Q4_0_QK 32u    // values per block
#ifndef Q4_0_BPG  // overridable for tuning experiments (-DQ4_0_BPG=...)
#define Q4_0_BPG 128u  // blocks staged per group iteration (check_contract holds src/kernel.rs to it)
#endif

template <int OUT>
QF_DEVICE void q4_0_dequant(const uint8_t* __restrict__ src, qf_v16* __restrict__ dst,
                            uint64_t n_blocks) {
    __shared__ qf_v16 stage[Q4_0_BPG * Q4_0_BB / 16u];
    __shared__ float scale[Q4_0_BPG];         // d of each staged block, as f32
    const uint16_t* s16 = (const uint16_t*)stage;
    const uint32_t E = QF_PER_VEC(OUT);       // values per 16-byte vector
    const uint32_t UPB = Q4_0_QK / E;         // vectors per block
    const uint64_t n_groups = (n_blocks + Q4_0_BPG - 1u) / Q4_0_BPG;

    for (uint64_t g = blockIdx.x; g < n_groups; g += gridDim.x) {
        const uint64_t first = g * Q4_0_BPG;
        const uint32_t nb = (uint32_t)qf_min_u64(n_blocks - first, Q4_0_BPG);
        qf_stage(stage, src + first * Q4_0_BB, nb * Q4_0_BB);
        __syncthreads();
        for (uint32_t b = threadIdx.x; b < nb; b += blockDim.x) {
            scale[b] = qf_f16_to_f32(s16[b * (Q4_0_BB / 2u)]);
        }
        __syncthreads();

        qf_v16* __restrict__ out = dst + first * UPB;
        const uint32_t units = nb * UPB;
        for (uint32_t u = threadIdx.x; u < units; u += blockDim.x) {
            const uint32_t blk = u / UPB;
            const uint32_t j = (u % UPB) * E;       // first value of the vector, 0..31
            const uint32_t shift = (j / 16u) * 4u;  // low nibbles for 0..15, high for 16..31
            const uint32_t qoff = blk * Q4_0_BB + 2u + (j % 16u);  // even
            const float d = scale[blk];
            float v[8];
#pragma unroll
            for (uint32_t w = 0; w < E / 4u; ++w) {
                const uint32_t q4 = (qf_ld_u32_even(s16, qoff + 4u * w) >> shift) & 0x0F0F0F0Fu;
                // ggml: (float)(q - 8) * d
                v[4u * w + 0u] = QF_MUL(qf_magic_minus<8u>(qf_magic_byte<0u>(q4)), d);
                v[4u * w + 1u] = QF_MUL(qf_magic_minus<8u>(qf_magic_byte<1u>(q4)), d);
                v[4u * w + 2u] = QF_MUL(qf_magic_minus<8u>(qf_magic_byte<2u>(q4)), d);
                v[4u * w + 3u] = QF_MUL(qf_magic_minus<8u>(qf_magic_byte<3u>(q4)), d);
            }
            out[u] = qf_pack<OUT>(v);
        }
        __syncthreads();
    }
}

QF_EXTERN_C QF_GLOBAL void q4_0_to_fp32_kernel(const uint8_t* src, float* dst, uint64_t n_blocks) {
    q4_0_dequant<QF_OUT_F32>(src, (qf_v16*)dst, n_blocks);
}

QF_EXTERN_C QF_GLOBAL void q4_0_to_fp16_kernel(const uint8_t* src, uint16_t* dst,
                                               uint64_t n_blocks) {
    q4_0_dequant<QF_OUT_F16>(src, (qf_v16*)dst, n_blocks);
}

QF_EXTERN_C QF_GLOBAL void q4_0_to_bf16_kernel(const uint8_t* src, uint16_t* dst,
                                               uint64_t n_blocks) {
    q4_0_dequant<QF_OUT_BF16>(src, (qf_v16*)dst, n_blocks);
}
