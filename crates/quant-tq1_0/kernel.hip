// TQ1_0 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Block (54 bytes, 256 values): qs[48] (five trits per byte), qh[4] (four trits per byte), then
// d (f16, little-endian). Trit n of a byte b is ((uint8)(b * 3^n) * 3) >> 8 (an 8-bit wrapping
// product); trit n of qs[m] is value 32n + m (m < 32), of qs[32 + m] value 160 + 16n + m
// (m < 16), of qh[j] value 240 + 4n + j. ggml computes y = (float)(xi - 1) * d with one
// rounding. Four consecutive values j..j+3 share n and come from four consecutive bytes. The
// trit xi (0..2) becomes (float)(xi - 1) exactly through the magic-number trick.
#include "qf_portability.h"

#ifndef TQ1_0_BPG  // overridable for tuning experiments (-DTQ1_0_BPG=...)
#define TQ1_0_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

// ggml's pow3 = {1, 3, 9, 27, 81, 243}, byte n of one word.
#define TQ1_0_POW3 0x0000F3511B090301ull

// (float)(xi - 1) for the trit at the top of byte `e` of `w` times `p` (mod 256).
QF_DEVICE float tq1_0_trit(uint32_t w, uint32_t e, uint32_t p) {
    const uint32_t q = (((w >> (8u * e)) & 0xFFu) * p) & 0xFFu;  // uint8_t q = b * pow3[n]
    const uint32_t xi = (q * 3u) >> 8;                             // 0..2
    return qf_magic_minus<1u>(qf_u32_as_f32(0x4B000000u | xi));
}

// The trits of the four bytes of `w`, each times `p` (mod 256), as bytes 0..3 of the result:
// tq1_0_trit's integer steps done for two bytes at a time, one byte per 16-bit lane (the even
// bytes, then the odd ones). A lane never carries into the next: b * p <= 255 * 243 < 2^16 and
// q * 3 <= 765 < 2^16, and (q * 3) >> 8 (0..2) is bits 8..9 of its lane.
QF_DEVICE uint32_t tq1_0_trits4(uint32_t w, uint32_t p) {
    const uint32_t even = (((w & 0x00FF00FFu) * p) & 0x00FF00FFu) * 3u;         // q0 * 3, q2 * 3
    const uint32_t odd = ((((w >> 8) & 0x00FF00FFu) * p) & 0x00FF00FFu) * 3u;   // q1 * 3, q3 * 3
    return ((even >> 8) & 0x00FF00FFu) | (odd & 0xFF00FF00u);
}

// (float)(xi - 1) for the trit in byte E of tq1_0_trits4's result.
template <uint32_t E>
QF_DEVICE float tq1_0_trit_of(uint32_t x) {
    return qf_magic_minus<1u>(qf_magic_byte<E>(x));
}

struct tq1_0_block {
    static constexpr uint32_t BB = 54u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = TQ1_0_BPG;
    static constexpr uint32_t NP = 1u;
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        return qf_ld_f16(s8, base + 52u);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const float d = p[0];
        // The power n and the first of the four bytes, for the three runs of bytes.
        uint32_t n, off;
        if (j < 160u) {
            n = j >> 5;
            off = j & 31u;
        } else if (j < 240u) {
            n = (j - 160u) >> 4;
            off = 32u + ((j - 160u) & 15u);
        } else {
            n = (j - 240u) >> 2;
            off = 48u;
        }
        const uint32_t pw = (uint32_t)(TQ1_0_POW3 >> (8u * n)) & 0xFFu;
        const uint32_t w = qf_ld_u32(s8, base + off);
        // ggml: (float)(xi - 1) * d
        v[0] = QF_MUL(tq1_0_trit(w, 0u, pw), d);
        v[1] = QF_MUL(tq1_0_trit(w, 1u, pw), d);
        v[2] = QF_MUL(tq1_0_trit(w, 2u, pw), d);
        v[3] = QF_MUL(tq1_0_trit(w, 3u, pw), d);
    }
    // Values j .. j+7 (j % 8 == 0): eight consecutive bytes with one power (j < 240), or the four
    // bytes qh[0..4] with two consecutive powers (j = 240, 248). The bytes are read once (three
    // aligned words, two funnel shifts), their trits taken four at a time (tq1_0_trits4); each
    // value is decode4's (float)(xi - 1) * d.
    QF_DEVICE static void decode8(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const float d = p[0];
        uint32_t n0, n1, off;
        if (j < 160u) {
            n0 = n1 = j >> 5;
            off = j & 31u;
        } else if (j < 240u) {
            n0 = n1 = (j - 160u) >> 4;
            off = 32u + ((j - 160u) & 15u);
        } else {
            n0 = (j - 240u) >> 2;
            n1 = n0 + 1u;
            off = 48u;
        }
        const uint32_t pw0 = (uint32_t)(TQ1_0_POW3 >> (8u * n0)) & 0xFFu;
        const uint32_t pw1 = (uint32_t)(TQ1_0_POW3 >> (8u * n1)) & 0xFFu;
        // Bytes off .. off+7 (for j >= 240, bytes 52.. are d and beyond: read, not used; the
        // skeleton's stage has a spare vector after the last block).
        const uint32_t* s32 = (const uint32_t*)s8;
        const uint32_t a = base + off;
        const uint32_t i = a >> 2, sh = (a & 3u) * 8u;
        const uint32_t x0 = s32[i], x1 = s32[i + 1u], x2 = s32[i + 2u];
        const uint32_t w0 = (uint32_t)((((uint64_t)x1 << 32) | x0) >> sh);
        const uint32_t w1 = j < 240u ? (uint32_t)((((uint64_t)x2 << 32) | x1) >> sh) : w0;
        const uint32_t t0 = tq1_0_trits4(w0, pw0);
        const uint32_t t1 = tq1_0_trits4(w1, pw1);
        // ggml: (float)(xi - 1) * d
        v[0] = QF_MUL(tq1_0_trit_of<0u>(t0), d);
        v[1] = QF_MUL(tq1_0_trit_of<1u>(t0), d);
        v[2] = QF_MUL(tq1_0_trit_of<2u>(t0), d);
        v[3] = QF_MUL(tq1_0_trit_of<3u>(t0), d);
        v[4] = QF_MUL(tq1_0_trit_of<0u>(t1), d);
        v[5] = QF_MUL(tq1_0_trit_of<1u>(t1), d);
        v[6] = QF_MUL(tq1_0_trit_of<2u>(t1), d);
        v[7] = QF_MUL(tq1_0_trit_of<3u>(t1), d);
    }
};

QF_DEQUANT_ENTRIES(tq1_0, tq1_0_block)
