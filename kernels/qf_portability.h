// quantforge kernel portability header.
//
// Every format's kernel.hip is written in the common subset of HIP and CUDA and includes only
// this header. It is compiled three ways:
//   * hipcc (AMD, HSACO for gfx906/908/90a/940/1030): __HIP_PLATFORM_AMD__ is defined;
//   * nvcc or NVRTC (NVIDIA): __CUDACC__ is defined;
// Nothing here assumes a warp size: kernels use blockDim/gridDim only.
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
#define QF_ADD(a, b) __fadd_rn((a), (b))
#define QF_SUB(a, b) __fsub_rn((a), (b))

// Bit casts.
QF_DEVICE float qf_u32_as_f32(uint32_t u) { return __uint_as_float(u); }
QF_DEVICE uint32_t qf_f32_as_u32(float f) { return __float_as_uint(f); }

// IEEE binary16 -> binary32, exact for every input (subnormals, Inf, NaN), done with integer
// operations so that the result does not depend on a vendor's half type or flush mode.
QF_DEVICE float qf_f16_to_f32(uint16_t h) {
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
