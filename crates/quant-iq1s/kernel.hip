// IQ1_S dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The KernelSpec
// source puts quant-tables' `iq1s_grid` fragment (qf_iq1s_grid[2048], ggml's iq1s_grid) first.
//
// Super-block (50 bytes, 256 values): d (f16), qs[32] (bits 0..7 of the grid index of each
// group of 8 values), qh[8] (u16 per 32-value sub-block ib: bits 3l..3l+2 = bits 8..10 of the
// index of group l, bits 12..14 = s, bit 15 = sign of the delta). ggml computes
//     dl = d * (float)(2*s + 1);  y = dl * ((float)grid[j] + delta)     delta = +-0.125
// with a rounding after each operation. The pre-pass computes dl of the 8 sub-blocks once per
// block; the grid lives in shared memory (copied once per launch in init()); a grid byte
// (0xFF, 0x00 or 0x01 = int8 -1, 0, 1) becomes a float exactly through the magic-number trick
// (byte ^ 0x80 = value + 128, then minus 128).
#include "qf_portability.h"

#ifndef IQ1_S_BPG  // overridable for tuning experiments (-DIQ1_S_BPG=...)
#define IQ1_S_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

// The grid as 4096 u32 halves: entry i's values 0..3 are word 2i, values 4..7 word 2i + 1.
__shared__ uint32_t s_iq1s_grid[4096];

struct iq1_s_block {
    static constexpr uint32_t BB = 50u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = IQ1_S_BPG;
    static constexpr uint32_t NP = 8u;  // dl of each of the 8 sub-blocks

    QF_DEVICE static void init() {
        qf_copy_table_halves<2048u>(s_iq1s_grid, qf_iq1s_grid);
    }

    // qh[ib], read as the high half of the aligned-or-not u32 two bytes before it, so that no
    // load reaches past the block (qh[7] ends the block, and the block may end the stage).
    QF_DEVICE static uint32_t qh(const uint8_t* s8, uint32_t base, uint32_t ib) {
        return qf_ld_u32(s8, base + 32u + 2u * ib) >> 16;
    }

    // Pre-pass value k: dl = d * (2 * ((qh[k] >> 12) & 7) + 1) of sub-block k.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t h = qh(s8, base, k);
        return QF_MUL(qf_ld_f16(s8, base), (float)(2u * ((h >> 12) & 7u) + 1u));
    }

    // Values j .. j+N-1 (N = 4 or 8, j % N == 0) of the block: all from one grid entry.
    template <uint32_t N>
    QF_DEVICE static void decode(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                 float* v) {
        const uint32_t ib = j >> 5;          // sub-block, 0..7
        const uint32_t l = (j >> 3) & 3u;    // group of 8 in the sub-block, 0..3
        const uint32_t hi4 = (j >> 2) & 1u;  // values 0..3 or 4..7 of the entry (N = 4)
        const uint32_t h = qh(s8, base, ib);
        const uint32_t lo = (qf_ld_u32(s8, base + 2u + 4u * ib) >> (8u * l)) & 0xFFu;
        const uint32_t index = lo | (((h >> (3u * l)) & 7u) << 8);
        const float dl = p[ib];
        const float delta = (h & 0x8000u) ? -0.125f : 0.125f;
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

QF_DEQUANT_ENTRIES(iq1_s, iq1_s_block)
