// IQ4_XS dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The table
// qf_kvalues_iq4nl (int8, 16 values) comes from quant-tables' fragment, prepended to this file.
//
// Super-block (136 bytes, 256 values): d (f16), scales_h (u16: bits 4..5 of the 6-bit scale of
// sub-block ib in bits 2ib..2ib+1), scales_l[4] (bits 0..3: low nibble of scales_l[ib/2] for even
// ib, high nibble for odd), qs[128] (sub-block ib in qs[16ib .. 16ib+16], as one IQ4_NL block:
// value 32ib + j in the low nibble of qs[16ib + j], value 32ib + j + 16 in its high nibble).
// ggml computes, with a rounding after each operation:
//     dl = d * (float)(ls - 32);  y = dl * (float)kvalues_iq4nl[index]
// The pre-pass computes dl of the 8 sub-blocks once per block. The table is copied once per
// launch into shared memory as floats (every int8 converts exactly).
#include "qf_portability.h"

#ifndef IQ4_XS_BPG  // overridable for tuning experiments (-DIQ4_XS_BPG=...)
#define IQ4_XS_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

__shared__ float s_iq4xs_values[16];

struct iq4_xs_block {
    static constexpr uint32_t BB = 136u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = IQ4_XS_BPG;
    static constexpr uint32_t NP = 8u;  // dl of each sub-block
    // The 16 table values, one per thread: a group has at least 64 threads, so one pass does
    // (a strided loop would only add a trip count, which AMD's compiler divides out).
    QF_DEVICE static void init() {
        if (threadIdx.x < 16u) s_iq4xs_values[threadIdx.x] = (float)qf_kvalues_iq4nl[threadIdx.x];
    }
    // Pre-pass value ib: dl = d * (ls - 32) of sub-block ib.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t ib) {
        const uint32_t scales_h = qf_ld_u16(s8, base + 2u);
        const uint32_t scales_l = qf_ld_u32(s8, base + 4u);
        const uint32_t ls = ((scales_l >> (4u * ib)) & 0xFu) | (((scales_h >> (2u * ib)) & 3u) << 4);
        return QF_MUL(qf_ld_f16(s8, base), (float)((int32_t)ls - 32));
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const uint32_t ib = j / 32u;  // sub-block
        const uint32_t l = j % 32u;   // 0..31, a multiple of 4
        const float dl = p[ib];
        // Values 0..15 of the sub-block are low nibbles, values 16..31 high nibbles.
        const uint32_t q =
            (qf_ld_u32(s8, base + 8u + 16u * ib + (l % 16u)) >> ((l / 16u) * 4u)) & 0x0F0F0F0Fu;
        // ggml: dl * kvalues_iq4nl[index]
        v[0] = QF_MUL(dl, s_iq4xs_values[q & 0xFu]);
        v[1] = QF_MUL(dl, s_iq4xs_values[(q >> 8) & 0xFu]);
        v[2] = QF_MUL(dl, s_iq4xs_values[(q >> 16) & 0xFu]);
        v[3] = QF_MUL(dl, s_iq4xs_values[q >> 24]);
    }
};

QF_DEQUANT_ENTRIES(iq4_xs, iq4_xs_block)
