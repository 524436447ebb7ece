// IQ2_S dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The table
// qf_iq2s_grid (quant-tables' fragment) precedes this file.
//
// Super-block (82 bytes, 256 values): d (f16), qs[32] at byte 2 (bits 0..7 of the grid index of
// group g, values 8g..8g+7), signs[32] at byte 34 (bit j of signs[g] negates value j of group
// g), qh[8] at byte 66 (bits 2l, 2l+1 of qh[ib] are bits 8, 9 of the index of group 4ib + l),
// scales[8] at byte 74 (sub-block ib: the low nibble scales its groups 0 and 1, the high nibble
// groups 2 and 3). Value j of a group is byte j of its 64-bit grid entry. ggml computes,
// rounding each operation:
//     db = (d * (0.5 + s)) * 0.25;  y = db * grid[j], negated where sign bit j is set
// The pre-pass computes the 16 db of a block once (db k serves groups 2k and 2k + 1). A grid
// magnitude (8, 25 or 43) is a byte below 2^7, converted exactly by the magic-number trick.
// ggml's sign is a sign flip (its compiled `* -1.f`, NaN signs included), done on the bits.
#include "qf_portability.h"

#ifndef IQ2_S_BPG  // overridable for tuning experiments (-DIQ2_S_BPG=...)
#define IQ2_S_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif


// Shared copy of the grid as 32-bit halves (entry i = words 2i, 2i + 1).
__shared__ uint32_t iq2_s_s_grid[2u * 1024u];

// v with its sign flipped when bit 0 of `neg` is set.
QF_DEVICE float iq2_s_signed(float v, uint32_t neg) {
    return qf_u32_as_f32(qf_f32_as_u32(v) ^ ((neg & 1u) << 31));
}

struct iq2_s_block {
    static constexpr uint32_t BB = 82u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = IQ2_S_BPG;
    static constexpr uint32_t NP = 16u;  // db of each 16 values
    QF_DEVICE static void init() {
        qf_copy_table_halves<1024u>(iq2_s_s_grid, qf_iq2s_grid);
    }
    // Pre-pass value k: db[k % 2] of sub-block k / 2 = d * (0.5f + nibble) * 0.25f.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t sc = qf_ld_u32(s8, base + 74u + (k >> 1)) & 255u;
        const uint32_t s = (sc >> (4u * (k & 1u))) & 0xFu;
        const float d = qf_ld_f16(s8, base);
        return QF_MUL(QF_MUL(d, QF_ADD(0.5f, (float)s)), 0.25f);
    }
    // Values j .. j+N-1 (N = 4 or 8, j % N == 0) of the block: all from one grid entry.
    template <uint32_t N>
    QF_DEVICE static void decode(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                 float* v) {
        const uint32_t g = j >> 3;         // group of 8, 0..31
        const uint32_t l = g & 3u;         // group within its sub-block
        const uint32_t h = (j >> 2) & 1u;  // which half of the group's 8 values (N = 4)
        const uint32_t lo = qf_ld_u32(s8, base + 2u + g) & 255u;
        const uint32_t signs = qf_ld_u32(s8, base + 34u + g) & 255u;
        const uint32_t qh = qf_ld_u32(s8, base + 66u + (g >> 2)) & 255u;
        const uint32_t idx = lo | ((qh << (8u - 2u * l)) & 0x300u);
        const float db = p[g >> 1];
#pragma unroll
        for (uint32_t k = 0; k < N / 4u; ++k) {
            const uint32_t hk = N == 8u ? k : h;
            const uint32_t w = iq2_s_s_grid[2u * idx + hk];
            const uint32_t sg = signs >> (4u * hk);
            v[4u * k + 0u] = iq2_s_signed(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<0u>(w))), sg);
            v[4u * k + 1u] = iq2_s_signed(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<1u>(w))), sg >> 1);
            v[4u * k + 2u] = iq2_s_signed(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<2u>(w))), sg >> 2);
            v[4u * k + 3u] = iq2_s_signed(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<3u>(w))), sg >> 3);
        }
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        decode<4u>(s8, base, p, j, v);
    }
    QF_DEVICE static void decode8(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        decode<8u>(s8, base, p, j, v);
    }
};

QF_DEQUANT_ENTRIES(iq2_s, iq2_s_block)
