// quantforge kernel portability header.
//
// Every format's kernel.hip is written in the common subset of HIP and CUDA and includes only
// this header. It is compiled three ways:
//   * hipcc (AMD, HSACO for gfx906/908/90a/940/1030): __HIP_PLATFORM_AMD__ is defined;
//   * nvcc or NVRTC (NVIDIA): __CUDACC__ is defined;
// Nothing here assumes a warp size: kernels use blockDim/gridDim only.
//
// Kernel ABI (see quant_core::KernelSpec): `src` and `dst` must be 16-byte aligned (every
// device allocation is); kernels stage input through shared memory with 16-byte loads and
// write their output with 16-byte stores.
//
// Bit-exactness rules for kernels:
//   * every float operation goes through the QF_* macros below, which use explicit
//     round-to-nearest intrinsics, so no compiler may contract a*b+c into an FMA;
//   * the operations are written in ggml's order, operand for operand.
#pragma once

#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
#include <hip/hip_runtime.h>
#define QF_HIP 1
#elif defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define QF_CUDA 1
#else
#error "qf_portability.h: compile with hipcc, nvcc or NVRTC"
#endif

#if defined(__CUDACC_RTC__)
// NVRTC has no system headers: define the fixed-width types ourselves.
typedef unsigned char uint8_t;
typedef signed char int8_t;
typedef unsigned short uint16_t;
typedef short int16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;
#elif defined(QF_CUDA)
#include <stdint.h>
#endif

#define QF_EXTERN_C extern "C"
#define QF_GLOBAL __global__
#define QF_DEVICE __device__ __forceinline__

// Explicitly rounded float arithmetic: never contracted, never reassociated.
// HIP provides the same __f*_rn intrinsics as CUDA.
#define QF_MUL(a, b) __fmul_rn((a), (b))
#define QF_SUB(a, b) __fsub_rn((a), (b))
#define QF_ADD(a, b) __fadd_rn((a), (b))

// Bit casts.
QF_DEVICE float qf_u32_as_f32(uint32_t u) { return __uint_as_float(u); }
QF_DEVICE uint32_t qf_f32_as_u32(float f) { return __float_as_uint(f); }

// IEEE binary16 -> binary32, exact for every input (subnormals, Inf, NaN), done with integer
// operations so that the result does not depend on a vendor's half type or flush mode.
QF_DEVICE float qf_f16_to_f32_int(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1fu) {
        // Inf or NaN; NaNs are made quiet, as x86's conversion does.
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0u);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        // Subnormal: normalise.
        uint32_t e = 113u;
        while ((man & 0x400u) == 0) { man <<= 1; e -= 1; }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    return qf_u32_as_f32(bits);
}

// The same conversion, fast: on NVIDIA one cvt.f32.f16, which is exact for every input
// (no flush: subnormals are kept; a NaN stays a NaN, quiet); elsewhere the integer routine.
QF_DEVICE float qf_f16_to_f32(uint16_t h) {
#if defined(QF_CUDA) && defined(__CUDA_ARCH__)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    return qf_f16_to_f32_int(h);
#endif
}

// binary32 -> binary16, round to nearest even; NaN stays NaN (quiet), overflow goes to Inf.
QF_DEVICE uint16_t qf_f32_to_f16_rne(float f) {
    uint32_t x = qf_f32_as_u32(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xffu) {
        return (uint16_t)(sign | 0x7c00u | (man ? (0x200u | (man >> 13)) : 0u));
    }
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half_man = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (half_man & 1u))) half_man += 1u;
        return (uint16_t)(sign | half_man);
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1u;  // may carry into Inf: correct
    return (uint16_t)h;
}

// binary32 -> bfloat16, round to nearest even; NaN stays NaN (quiet).
QF_DEVICE uint16_t qf_f32_to_bf16_rne(float f) {
    uint32_t x = qf_f32_as_u32(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    uint32_t lsb = (x >> 16) & 1u;
    return (uint16_t)((x + 0x7fffu + lsb) >> 16);
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the dequantization kernels.

// 16 bytes moved as one vector load or store.
struct alignas(16) qf_v16 {
    uint32_t x, y, z, w;
};

// Byte `E` (0..3) of `x` as the float 2^23 + byte, built with one byte permute:
// result bytes = [x.byte E, 0, 0, 0x4B]. With `x`'s bytes below 2^7 this is exact, and
// subtracting 2^23 + bias (qf_magic_minus) gives (float)(byte - bias) exactly.
template <uint32_t E>
QF_DEVICE float qf_magic_byte(uint32_t x) {
    return qf_u32_as_f32(__byte_perm(x, 0x4B000000u, 0x7440u + E));
}

template <uint32_t BIAS>
QF_DEVICE float qf_magic_minus(float magic) {
    return QF_SUB(magic, qf_u32_as_f32(0x4B000000u | BIAS));
}

// Two f32 values rounded to nearest-even into packed f16 / bf16 bits (lo in bits 0..15).
// On NVIDIA sm_80+ one cvt.rn instruction does both (IEEE round-to-nearest-even, subnormals
// kept; a NaN stays a NaN); elsewhere the exact integer routines above.
QF_DEVICE uint32_t qf_pack_f16x2(float lo, float hi) {
#if defined(QF_CUDA) && defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 800)
    uint32_t r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    return (uint32_t)qf_f32_to_f16_rne(lo) | ((uint32_t)qf_f32_to_f16_rne(hi) << 16);
#endif
}

QF_DEVICE uint32_t qf_pack_bf16x2(float lo, float hi) {
#if defined(QF_CUDA) && defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 800)
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    return (uint32_t)qf_f32_to_bf16_rne(lo) | ((uint32_t)qf_f32_to_bf16_rne(hi) << 16);
#endif
}

// Output element types; QF_PER_VEC(OUT) values fill one 16-byte vector.
#define QF_OUT_F32 0
#define QF_OUT_F16 1
#define QF_OUT_BF16 2
#define QF_PER_VEC(OUT) ((OUT) == QF_OUT_F32 ? 4 : 8)

// Packs QF_PER_VEC(OUT) values (in element order) into one 16-byte vector of OUT.
template <int OUT>
QF_DEVICE qf_v16 qf_pack(const float* v) {
    qf_v16 r;
    if (OUT == QF_OUT_F32) {
        r.x = qf_f32_as_u32(v[0]);
        r.y = qf_f32_as_u32(v[1]);
        r.z = qf_f32_as_u32(v[2]);
        r.w = qf_f32_as_u32(v[3]);
    } else if (OUT == QF_OUT_F16) {
        r.x = qf_pack_f16x2(v[0], v[1]);
        r.y = qf_pack_f16x2(v[2], v[3]);
        r.z = qf_pack_f16x2(v[4], v[5]);
        r.w = qf_pack_f16x2(v[6], v[7]);
    } else {
        r.x = qf_pack_bf16x2(v[0], v[1]);
        r.y = qf_pack_bf16x2(v[2], v[3]);
        r.z = qf_pack_bf16x2(v[4], v[5]);
        r.w = qf_pack_bf16x2(v[6], v[7]);
    }
    return r;
}

// Copies `bytes` bytes from global `src` (16-byte aligned) into shared `dst`: whole 16-byte
// vectors first, then the odd tail byte by byte. All threads of the group take part.
QF_DEVICE void qf_stage(qf_v16* dst, const uint8_t* __restrict__ src, uint32_t bytes) {
    const uint32_t nvec = bytes / 16u;
    const qf_v16* __restrict__ s16 = (const qf_v16*)src;
    for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) dst[i] = s16[i];
    uint8_t* d8 = (uint8_t*)dst;
    for (uint32_t i = nvec * 16u + threadIdx.x; i < bytes; i += blockDim.x) d8[i] = src[i];
}


// Bits 0..3 of `h`, each moved to bit 4 of its own byte (the fifth bit of four 5-bit quants).
QF_DEVICE uint32_t qf_bits_to_bit4(uint32_t h) {
    return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

QF_DEVICE uint64_t qf_min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

// Little-endian u32 / u16 at any byte offset of 16-byte aligned shared memory: two aligned
// 32-bit loads and a funnel shift (no byte loads, no misaligned access on either vendor).
QF_DEVICE uint32_t qf_ld_u32(const uint8_t* s8, uint32_t off) {
    // Branch-free, so that the compiler can merge equal loads of neighbouring decode calls; the
    // word after the last one may be read (the skeleton's stage has a spare vector).
    const uint32_t* s32 = (const uint32_t*)s8;
    const uint32_t i = off >> 2;
    const uint64_t pair = ((uint64_t)s32[i + 1u] << 32) | s32[i];  // one funnel shift
    return (uint32_t)(pair >> ((off & 3u) * 8u));
}QF_DEVICE uint32_t qf_ld_u16(const uint8_t* s8, uint32_t off) {
    return qf_ld_u32(s8, off & ~1u) >> ((off & 1u) * 8u) & 0xFFFFu;
}
// The f16 at any even byte offset, as f32 (exact).
QF_DEVICE float qf_ld_f16(const uint8_t* s8, uint32_t off) {
    return qf_f16_to_f32((uint16_t)qf_ld_u16(s8, off));
}

// Lookup tables (the i-quant grids) copied from global into shared memory by a format's init(),
// all threads of the group taking part. The loops stay rolled: unrolled or vectorized, AMD's
// compiler computes their trip count (a division by blockDim.x) with a float reciprocal and a
// float multiply-add, exact for the integer quotient but a fused multiply-add in the code object
// all the same, which build-kernels' static check would have to tell apart from a real one.
#if defined(QF_HIP)
#define QF_ROLLED _Pragma("clang loop unroll(disable) vectorize(disable) interleave(disable)")
#else
#define QF_ROLLED _Pragma("unroll 1")
#endif

// N entries, as they are.
template <uint32_t N, class T>
QF_DEVICE void qf_copy_table(T* dst, const T* src) {
    QF_ROLLED
    for (uint32_t i = threadIdx.x; i < N; i += blockDim.x) dst[i] = src[i];
}

// N 64-bit entries as 2N 32-bit words (entry i = words 2i, 2i + 1: no 64-bit shared loads).
template <uint32_t N>
QF_DEVICE void qf_copy_table_halves(uint32_t* dst, const uint64_t* src) {
    QF_ROLLED
    for (uint32_t i = threadIdx.x; i < N; i += blockDim.x) {
        dst[2u * i] = (uint32_t)src[i];
        dst[2u * i + 1u] = (uint32_t)(src[i] >> 32);
    }
}

// ---------------------------------------------------------------------------------------------
// The dequantization skeleton, written once for every format.
//
// A format describes its block with a struct (see any crates/quant-*/kernel.hip):
//
//   struct q8_0_block {
//       static constexpr uint32_t BB = 34;    // bytes per block
//       static constexpr uint32_t QK = 32;    // values per block
//       static constexpr uint32_t BPG = ...;  // blocks staged per group ((BPG * BB) % 16 == 0)
//       static constexpr uint32_t NP = 1;     // f32 values the pre-pass computes per block
//       // Pre-pass value k (0 <= k < NP) of the block at byte `base` of the staged bytes:
//       // scales (d * sc, dmin * m, ...), computed once per block, in ggml's order.
//       QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k);
//       // The four values j .. j+3 (j a multiple of 4) of that block, in ggml's order,
//       // given its pre-pass values `p`.
//       QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p,
//                                     uint32_t j, float* v);
//       // Optional: once per launch, before the first block (see qf_init below).
//       QF_DEVICE static void init();
//   };
//
// and gets its three entry points from QF_DEQUANT_ENTRIES(prefix, struct). The skeleton stages
// BPG blocks into shared memory with 16-byte loads, runs the pre-pass (one thread per value),
// then has each thread produce one 16-byte output vector at a time (4 f32 or 8 f16/bf16 values:
// one decode4 call; one decode8 or two decode4 calls) and store it; consecutive threads write
// consecutive vectors, so every store instruction fills whole 32-byte sectors. Groups stride
// over the tensor, so any grid size works; nothing depends on the warp size. Three optional
// parts follow: init(), decode8 and runs (R, S, decode_runs, which replace decode4).

// Optional once-per-launch set-up of a format (detected, so formats without it write nothing):
// `QF_DEVICE static void init()` runs on every thread of the group before its first block, then
// the group synchronises. Formats with lookup tables (the i-quant grids) copy them there from
// global memory into file-scope __shared__ arrays, so that lookups are shared-memory reads.
template <class F>
QF_DEVICE auto qf_init(int) -> decltype(F::init(), void()) {
    F::init();
    __syncthreads();
}
template <class F>
QF_DEVICE void qf_init(long) {}

// Optional runs: a format whose values come in R runs of S values that share their bytes (the
// low and high nibbles of the same quant bytes, the four 2-bit fields of a byte...) declares
//     static constexpr uint32_t R = ..., S = ...;   // powers of two; R * S divides QK; S >= 8
//     template <uint32_t E>
//     QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
//                                       uint32_t j0, float (*v)[8]);
// where decode_runs fills v[r][0 .. E) with the values j0 + r * S ... (E = 4 or 8 consecutive
// values of each run; j0 = c * R * S + l, l a multiple of E below S), reading each shared byte
// once. Each thread then produces R vectors per unit, and neighbouring threads still write
// neighbouring vectors of each run. Without R and S a unit is E consecutive values (decode4).
//
// Optional decode8: a format whose values come in groups of 8 that share their lookups (an
// i-quant grid entry: one index, one sign byte, one scale) may also define
//     QF_DEVICE static void decode8(const uint8_t* s8, uint32_t base, const float* p,
//                                   uint32_t j, float* v);   // values j .. j+7, j % 8 == 0
// which the skeleton then calls for 8-value (f16/bf16) vectors instead of two decode4.
template <class F>
QF_DEVICE auto qf_decode8(const uint8_t* s8, uint32_t base, const float* p, uint32_t j, float* v,
                          int) -> decltype(F::decode8(s8, base, p, j, v), void()) {
    F::decode8(s8, base, p, j, v);
}
template <class F>
QF_DEVICE void qf_decode8(const uint8_t* s8, uint32_t base, const float* p, uint32_t j, float* v,
                          long) {
    F::decode4(s8, base, p, j, v);
    F::decode4(s8, base, p, j + 4u, v + 4);
}

template <class F, class = void>
struct qf_runs_of {
    static constexpr uint32_t R = 1u, S = F::QK;
    template <uint32_t E>
    QF_DEVICE static void decode(const uint8_t* s8, uint32_t base, const float* p, uint32_t j0,
                                 float (*v)[8]) {
        if (E == 8u) {
            qf_decode8<F>(s8, base, p, j0, v[0], 0);
        } else {
            F::decode4(s8, base, p, j0, v[0]);
        }
    }
};
template <class F>
struct qf_runs_of<F, decltype((void)F::R, (void)F::S, void())> {
    static constexpr uint32_t R = F::R, S = F::S;
    template <uint32_t E>
    QF_DEVICE static void decode(const uint8_t* s8, uint32_t base, const float* p, uint32_t j0,
                                 float (*v)[8]) {
        F::template decode_runs<E>(s8, base, p, j0, v);
    }
};

template <class F, int OUT>
QF_DEVICE void qf_dequant(const uint8_t* __restrict__ src, qf_v16* __restrict__ dst,
                          uint64_t n_blocks) {
    static_assert((F::BPG * F::BB) % 16u == 0u, "a group's bytes must be whole 16-byte vectors");
    static_assert(F::QK % 8u == 0u, "a block must fill whole output vectors");
    __shared__ qf_v16 stage[F::BPG * F::BB / 16u + 1u];  // + 1: qf_ld_u32 may read a word past
    constexpr uint32_t NP1 = F::NP > 0u ? F::NP : 1u;  // pre-pass slots per block, at least 1
    __shared__ float pre[F::BPG * NP1];
    const uint8_t* s8 = (const uint8_t*)stage;
    constexpr uint32_t E = QF_PER_VEC(OUT);  // values per 16-byte vector
    const uint32_t VPB = F::QK / E;       // vectors per block
    constexpr uint32_t R = qf_runs_of<F>::R, S = qf_runs_of<F>::S;
    static_assert(F::QK % (R * S) == 0u && S % 8u == 0u && (S & (S - 1u)) == 0u &&
                      (R & (R - 1u)) == 0u,
                  "runs: R and S powers of two, S a multiple of 8, R * S dividing QK");
    const uint64_t n_groups = (n_blocks + F::BPG - 1u) / F::BPG;
    qf_init<F>(0);

    for (uint64_t g = blockIdx.x; g < n_groups; g += gridDim.x) {
        const uint64_t first = g * F::BPG;
        const uint32_t nb = (uint32_t)qf_min_u64(n_blocks - first, F::BPG);
        qf_stage(stage, src + first * F::BB, nb * F::BB);
        __syncthreads();
        if (F::NP > 0u) {
            for (uint32_t i = threadIdx.x; i < nb * F::NP; i += blockDim.x) {
                pre[i] = F::pre(s8, (i / NP1) * F::BB, i % NP1);
            }
            __syncthreads();
        }
        qf_v16* __restrict__ out = dst + first * VPB;
        // A unit: the E values at offset l of each of the R runs of chunk c of a block.
        const uint32_t UPC = S / E;                 // units per chunk (a power of two)
        const uint32_t UPB = F::QK / (R * S) * UPC;  // units per block
        const uint32_t units = nb * UPB;
        for (uint32_t u = threadIdx.x; u < units; u += blockDim.x) {
            const uint32_t blk = u / UPB;
            const uint32_t q = u % UPB;
            // j0 = c * R * S + l (R * S and S are powers of two: the bits are disjoint).
            const uint32_t j0 = ((q / UPC) * (R * S)) | ((q % UPC) * E);
            const float* p = pre + blk * NP1;
            float v[R][8];
            qf_runs_of<F>::template decode<E>(s8, blk * F::BB, p, j0, v);
#pragma unroll
            for (uint32_t r = 0; r < R; ++r) out[blk * VPB + (j0 | (r * S)) / E] = qf_pack<OUT>(v[r]);
        }
        __syncthreads();
    }
}

// The three entry points of a format (see quant_core::KernelSpec and quant_core::kernel_spec!):
// PREFIX_to_fp32_kernel, PREFIX_to_fp16_kernel, PREFIX_to_bf16_kernel.
#define QF_DEQUANT_ENTRIES(PREFIX, F)                                                          \
    QF_EXTERN_C QF_GLOBAL void PREFIX##_to_fp32_kernel(const uint8_t* src, float* dst,         \
                                                        uint64_t n_blocks) {                   \
        qf_dequant<F, QF_OUT_F32>(src, (qf_v16*)dst, n_blocks);                                \
    }                                                                                          \
    QF_EXTERN_C QF_GLOBAL void PREFIX##_to_fp16_kernel(const uint8_t* src, uint16_t* dst,      \
                                                        uint64_t n_blocks) {                   \
        qf_dequant<F, QF_OUT_F16>(src, (qf_v16*)dst, n_blocks);                                \
    }                                                                                          \
    QF_EXTERN_C QF_GLOBAL void PREFIX##_to_bf16_kernel(const uint8_t* src, uint16_t* dst,      \
                                                        uint64_t n_blocks) {                   \
        qf_dequant<F, QF_OUT_BF16>(src, (qf_v16*)dst, n_blocks);                               \
    }
