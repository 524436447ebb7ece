// IQ1_M dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The KernelSpec
// source puts quant-tables' `iq1s_grid` fragment (qf_iq1s_grid[2048], ggml's iq1s_grid) first.
//
// Super-block (56 bytes, 256 values): qs[32] (bits 0..7 of the grid index of each group of 8
// values), qh[16] (a nibble per group: bits 0..2 = bits 8..10 of its index, bit 3 = sign of its
// delta; group l of sub-block ib is nibble l of the u16 qh[2ib] | qh[2ib+1] << 8), sc[4] (u16:
// bits 6*(ib%2) .. +2 = s1 and +3 .. +5 = s2 of sub-block ib = 2k + ib%2, bits 12..15 = nibble k
// of the f16 super-block scale d). ggml computes
//     dl1 = d * (float)(2*s1 + 1);  dl2 = d * (float)(2*s2 + 1)
//     y = (l < 2 ? dl1 : dl2) * ((float)grid[j] + delta)                 delta = +-0.125
// with a rounding after each operation. The pre-pass computes (dl1, dl2) of the 8 sub-blocks
// once per block; the grid lives in shared memory (copied once per launch in init()); a grid
// byte (0xFF, 0x00 or 0x01 = int8 -1, 0, 1) becomes a float exactly through the magic-number
// trick (byte ^ 0x80 = value + 128, then minus 128). Every load stays inside its block.
#include "qf_portability.h"

#ifndef IQ1_M_BPG  // overridable for tuning experiments (-DIQ1_M_BPG=...)
#define IQ1_M_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

// The grid as 4096 u32 halves: entry i's values 0..3 are word 2i, values 4..7 word 2i + 1.
__shared__ uint32_t s_iq1s_grid[4096];

struct iq1_m_block {
    static constexpr uint32_t BB = 56u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = IQ1_M_BPG;
    static constexpr uint32_t NP = 16u;  // (dl1, dl2) of each of the 8 sub-blocks

    QF_DEVICE static void init() {
        qf_copy_table_halves<2048u>(s_iq1s_grid, qf_iq1s_grid);
    }

    // Pre-pass value k: dl1 (even k) or dl2 (odd k) of sub-block ib = k / 2.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t a = qf_ld_u32(s8, base + 48u);  // sc[0] | sc[1] << 16
        const uint32_t b = qf_ld_u32(s8, base + 52u);  // sc[2] | sc[3] << 16
        // ggml: (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)
        const uint32_t bits = ((a & 0xFFFFu) >> 12) | ((a >> 24) & 0x00F0u) |
                              (((b & 0xFFFFu) >> 4) & 0x0F00u) | ((b >> 16) & 0xF000u);
        const float d = qf_f16_to_f32((uint16_t)bits);
        const uint32_t ib = k >> 1;
        const uint32_t sc = ((ib & 4u) ? b : a) >> (16u * ((ib >> 1) & 1u));  // sc[ib / 2]
        const uint32_t s = (sc >> (6u * (ib & 1u) + 3u * (k & 1u))) & 7u;
        return QF_MUL(d, (float)(2u * s + 1u));
    }

    // Values j .. j+N-1 (N = 4 or 8, j % N == 0) of the block: all from one grid entry.
    template <uint32_t N>
    QF_DEVICE static void decode(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                 float* v) {
        const uint32_t ib = j >> 5;          // sub-block, 0..7
        const uint32_t l = (j >> 3) & 3u;    // group of 8 in the sub-block, 0..3
        const uint32_t hi4 = (j >> 2) & 1u;  // values 0..3 or 4..7 of the entry (N = 4)
        const uint32_t lo = (qf_ld_u32(s8, base + 4u * ib) >> (8u * l)) & 0xFFu;
        const uint32_t nib = (qf_ld_u32(s8, base + 32u + 2u * ib) >> (4u * l)) & 0xFu;
        const uint32_t index = lo | ((nib & 7u) << 8);
        const float dl = p[2u * ib + (l >> 1)];
        const float delta = (nib & 8u) ? -0.125f : 0.125f;
#pragma unroll
        for (uint32_t k = 0; k < N / 4u; ++k) {
            const uint32_t q = s_iq1s_grid[2u * index + (N == 8u ? k : hi4)] ^ 0x80808080u;
            // ggml: dl * (grid[j] + delta)
            v[4u * k + 0u] = QF_MUL(dl, QF_ADD(qf_magic_minus<128u>(qf_magic_byte<0u>(q)), delta));
            v[4u * k + 1u] = QF_MUL(dl, QF_ADD(qf_magic_minus<128u>(qf_magic_byte<1u>(q)), delta));
            v[4u * k + 2u] = QF_MUL(dl, QF_ADD(qf_magic_minus<128u>(qf_magic_byte<2u>(q)), delta));
            v[4u * k + 3u] = QF_MUL(dl, QF_ADD(qf_magic_minus<128u>(qf_magic_byte<3u>(q)), delta));
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

QF_DEQUANT_ENTRIES(iq1_m, iq1_m_block)
