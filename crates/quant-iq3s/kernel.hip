// IQ3_S dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The table
// qf_iq3s_grid (generated, from quant-tables) precedes this file in the kernel source; init()
// copies it into shared memory once per launch.
//
// Super-block (110 bytes, 256 values): d (f16), qs[64] (bits 0..7 of the grid index of values
// 4t..4t+3 in qs[t]), qh[8] (bit 8 of that index: bit t % 8 of qh[t / 8]), signs[32] (the sign
// of value e: bit e % 8 of signs[e / 8]), scales[4] (4-bit scale of sub-block ib: nibble ib % 2
// of scales[ib / 2]). ggml computes, with a rounding after each operation:
//     db = d * (float)(1 + 2 * s);  y = db * (float)grid, negated where the sign bit is set
// (ggml's `* (sign ? -1.f : 1.f)`, which its compiler turns into a negation: the sign bit of
// the product is flipped). The pre-pass computes db of the 8 sub-blocks once per block. A grid
// value is a byte below 2^7, so the magic-number trick converts it exactly.
#include "qf_portability.h"

#ifndef IQ3_S_BPG  // overridable for tuning experiments (-DIQ3_S_BPG=...)
#define IQ3_S_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif


// Shared copy of the grid, filled by init().
__shared__ uint32_t iq3_s_s_grid[512];

struct iq3_s_block {
    static constexpr uint32_t BB = 110u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = IQ3_S_BPG;
    static constexpr uint32_t NP = 8u;  // db of each of the 8 sub-blocks
    QF_DEVICE static void init() {
        qf_copy_table<512u>(iq3_s_s_grid, qf_iq3s_grid);
    }
    // Pre-pass value k: db of sub-block k.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t s = ((uint32_t)s8[base + 106u + (k >> 1)] >> (4u * (k & 1u))) & 0xFu;
        return QF_MUL(qf_ld_f16(s8, base), (float)(1u + 2u * s));
    }
    // The four values of one grid entry `grid`, their sign bits in bits 0..3 of `signs`.
    // ggml: db * grid[k], negated where the sign bit is set
    QF_DEVICE static void four(float db, uint32_t grid, uint32_t signs, float* v) {
        v[0] = qf_u32_as_f32(qf_f32_as_u32(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<0u>(grid)))) ^
                             ((signs & 1u) << 31));
        v[1] = qf_u32_as_f32(qf_f32_as_u32(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<1u>(grid)))) ^
                             (((signs >> 1) & 1u) << 31));
        v[2] = qf_u32_as_f32(qf_f32_as_u32(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<2u>(grid)))) ^
                             (((signs >> 2) & 1u) << 31));
        v[3] = qf_u32_as_f32(qf_f32_as_u32(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<3u>(grid)))) ^
                             (((signs >> 3) & 1u) << 31));
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const uint32_t t = j >> 2;  // grid entry of values j..j+3, 0..63
        const float db = p[j >> 5];
        const uint32_t index =
            (uint32_t)s8[base + 2u + t] | ((((uint32_t)s8[base + 66u + (t >> 3)] >> (t & 7u)) & 1u) << 8);
        const uint32_t grid = iq3_s_s_grid[index];
        // The sign bits of values j..j+3: bits 0..3 or 4..7 of signs[j / 8].
        const uint32_t signs = (uint32_t)s8[base + 74u + (j >> 3)] >> (j & 4u);
        four(db, grid, signs, v);
    }
    // Values j .. j+7 (j % 8 == 0): grid entries t = j/4 and t + 1, which share db, their qh
    // byte (t even: bits t % 8 and t % 8 + 1 of qh[t / 8]) and signs[j / 8]; their low index
    // bytes qs[t], qs[t + 1] are one aligned u16 (base and t are even). Each of these is read
    // once; each value is the same product and sign flip as decode4's.
    QF_DEVICE static void decode8(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const uint32_t t = j >> 2;  // grid entry of values j..j+3, 0..63, even
        const float db = p[j >> 5];
        const uint32_t qs2 = ((const uint16_t*)s8)[(base + 2u + t) >> 1];
        const uint32_t qh = (uint32_t)s8[base + 66u + (t >> 3)] >> (t & 7u);
        const uint32_t signs = (uint32_t)s8[base + 74u + (j >> 3)];
        four(db, iq3_s_s_grid[(qs2 & 0xFFu) | ((qh & 1u) << 8)], signs, v);
        four(db, iq3_s_s_grid[(qs2 >> 8) | ((qh & 2u) << 7)], signs >> 4, v + 4);
    }
};

QF_DEQUANT_ENTRIES(iq3_s, iq3_s_block)
