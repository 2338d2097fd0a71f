#include "mote/ops/matmul.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "mote/util/error.h"
#include "mote/util/parallel.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define MOTE_AVX2 1
#endif

namespace mote {
namespace {

std::atomic<uint64_t> g_weight_bytes{0};

// Below this many multiply-adds a product runs on the calling thread: the
// fork/join of a parallel region would cost more than it saves.
constexpr int64_t kParallelThreshold = 1 << 16;

// Tokens per register tile of the 512-bit kernel, and weight rows per tile.
constexpr int kTokenTile = 6;
constexpr int kRowBlock = 4;

template <DType DT>
constexpr size_t kElementSize = DT == DType::F32       ? 4
                                : DT == DType::F8_E4M3 ? 1
                                                       : 2;

// Element `i` of a stored row, widened; FP8 values come without their block
// scale (the callers multiply by it).
template <DType DT>
inline float load_scalar(const std::byte* row, int i) {
  if constexpr (DT == DType::MXFP4) {
    const auto byte = static_cast<uint8_t>(row[i / 2]);
    return e2m1_to_float(i % 2 == 0 ? byte & 0xF : byte >> 4);
  } else if constexpr (DT == DType::F8_E4M3) {
    return e4m3_to_float(static_cast<uint8_t>(row[i]));
  } else if constexpr (DT == DType::F32) {
    float f;
    std::memcpy(&f, row + 4 * static_cast<size_t>(i), 4);
    return f;
  } else {
    uint16_t bits;
    std::memcpy(&bits, row + 2 * static_cast<size_t>(i), 2);
    if constexpr (DT == DType::BF16) {
      const uint32_t wide = static_cast<uint32_t>(bits) << 16;
      float f;
      std::memcpy(&f, &wide, 4);
      return f;
    } else {
#ifdef MOTE_AVX2
      return _cvtsh_ss(bits);
#else
      float f;
      Weight w{DType::F16, 1, 1, reinterpret_cast<const std::byte*>(&bits)};
      widen_row(w, 0, &f);
      return f;
#endif
    }
  }
}

// Weight element (row, i) as the reference dequantizes it: FP8 times its
// block scale in one rounding, other dtypes widened exactly.
template <DType DT>
inline float weight_value(const Weight& w, const std::byte* row_data, int row, int i) {
  if constexpr (DT == DType::F8_E4M3 || DT == DType::MXFP4) {
    return load_scalar<DT>(row_data, i) * w.scale(row, i);
  } else {
    return load_scalar<DT>(row_data, i);
  }
}

#ifdef MOTE_AVX2

// Eight e4m3 bytes as fp32 times 2^-8, exactly: each byte shifted into the
// high half of a 16-bit lane is an f16 with the right sign, mantissa and
// exponent (bias 15 instead of 7) once the sign's copy in bit 14 is
// cleared, and F16C widens it, subnormals included.
inline __m256 load8_fp8(const std::byte* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i high = _mm_unpacklo_epi8(_mm_setzero_si128(), bytes);
  const __m128i half = _mm_and_si128(_mm_srai_epi16(high, 1), _mm_set1_epi16(static_cast<short>(0xBFFF)));
  return _mm256_cvtph_ps(half);
}

// The scale that turns load8_fp8's values into dequantized weights:
// (q * 2^-8) * (s * 2^8) rounds exactly like q * s.
inline __m256 fp8_scale(const Weight& w, int row, int col) { return _mm256_set1_ps(w.scale(row, col) * 256.0f); }

template <DType DT>
inline __m256 load8(const std::byte* p) {
  if constexpr (DT == DType::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  } else if constexpr (DT == DType::BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

// Fixed-order horizontal sum of the 8 lanes.
inline float hsum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#if defined(__AVX512F__)
// GCC 12's own _mm512_cvtph_ps starts from an undefined register and warns about it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Sixteen e4m3 bytes at once, as load8_fp8 does eight: the widening is what
// limits FP8 decode, and 512-bit registers halve its instructions.
inline __m512 widen16_fp8(__m128i bytes) {
  const __m256i high = _mm256_slli_epi16(_mm256_cvtepu8_epi16(bytes), 8);
  return _mm512_cvtph_ps(_mm256_and_si256(_mm256_srai_epi16(high, 1), _mm256_set1_epi16(static_cast<short>(0xBFFF))));
}
inline __m512 load16_fp8(const std::byte* p) {
  return widen16_fp8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// The last 8 of a row (upper lanes zero).
inline __m512 load8_fp8_wide(const std::byte* p) {
  return widen16_fp8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
// Fixed-order reduction of 16 lanes: the two 256-bit halves, then hsum's order.
inline float hsum16(__m512 v) { return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1))); }

// The FP8 micro-kernel on 512-bit registers: per (token, row) one
// accumulator, blocks of 128 columns in 16-wide steps, an 8-wide step for
// a remainder of 8 or more, scalar for the rest; the same for any NT. With
// kShared (the NR rows lie in one 128-row block, so share their scales)
// the block scale multiplies the activations once instead of every weight.
template <int NT, int NR, bool kShared, bool kPrefetch>
void micro_kernel_fp8_512(const float* x, size_t xs, const Weight& w, int row, const std::byte* wp, size_t ws, float* y,
                          size_t ys) {
  const int cols = w.cols;
  __m512 acc[NT][NR];
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_setzero_ps();
  int i = 0;
  for (int block_begin = 0; block_begin < cols; block_begin += kFp8Block) {
    const int block_end = std::min(cols, block_begin + kFp8Block);
    __m512 scale[NR];
    for (int r = 0; r < NR; ++r) scale[r] = _mm512_set1_ps(w.scale(row + r, block_begin) * 256.0f);
    for (; i + 16 <= block_end; i += 16) {
      if constexpr (kPrefetch) {
        // As in micro_kernel_512: the next row block, one instruction in a loop.
#pragma GCC unroll 1
        for (int r = 0; r < NR; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(wp + (kRowBlock + r) * ws + static_cast<size_t>(i)), _MM_HINT_T0);
      }
      __m512 wv[NR];
      for (int r = 0; r < NR; ++r) {
        wv[r] = load16_fp8(wp + r * ws + static_cast<size_t>(i));
        if constexpr (!kShared) wv[r] = _mm512_mul_ps(wv[r], scale[r]);
      }
      for (int t = 0; t < NT; ++t) {
        __m512 xv = _mm512_loadu_ps(x + t * xs + i);
        __asm__("" : "+v"(xv));  // one load, not one per multiply-add (see MOTE_STEP_512)
        if constexpr (kShared) xv = _mm512_mul_ps(xv, scale[0]);
        for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
      }
    }
    if (i + 8 <= block_end) {
      __m512 wv[NR];
      for (int r = 0; r < NR; ++r) {
        wv[r] = load8_fp8_wide(wp + r * ws + static_cast<size_t>(i));
        if constexpr (!kShared) wv[r] = _mm512_mul_ps(wv[r], scale[r]);
      }
      for (int t = 0; t < NT; ++t) {
        __m512 xv = _mm512_maskz_loadu_ps(0xFF, x + t * xs + i);
        if constexpr (kShared) xv = _mm512_mul_ps(xv, scale[0]);
        for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
      }
      i += 8;
    }
  }
  for (int t = 0; t < NT; ++t) {
    for (int r = 0; r < NR; ++r) {
      float s = hsum16(acc[t][r]);
      for (int j = i; j < cols; ++j) s += x[t * xs + j] * weight_value<DType::F8_E4M3>(w, wp + r * ws, row + r, j);
      y[t * ys + r] = s;
    }
  }
}

// Prefill on FP8 rows that share their scales: micro_kernel_fp8_512's
// operations for 6 tokens at a time, over columns [k0, k1) (whole 128-column
// blocks but at the row's end), with the accumulators kept lane by lane in
// `spill` between chunks, so each (token, row) sees the same sequence as in
// one pass. With 2 tokens per widened weight vector, widening the bytes
// bounded prefill; 6 share it here.
constexpr int kFp8TokenTile = 6;
// Columns per chunk: whole scale blocks whose weights (4 rows) stay in L1
// while the token tiles pass over them.
constexpr int kFp8ChunkBlocks = 4;
constexpr int kFp8ColumnChunk = kFp8ChunkBlocks * kFp8Block;
template <int NT, int NR>
void fp8_chunk_512(const float* x, size_t xs, const Weight& w, int row, const std::byte* wp, size_t ws, int k0, int k1,
                   float* spill, float* y, size_t ys) {
  __m512 acc[NT][NR];
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) acc[t][r] = k0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(spill + 16 * (t * NR + r));
  // One loop over the chunk's 16-column steps, the scale switched at each
  // block (all but the row's last are whole multiples of 16): a loop per
  // block made GCC store and reload the accumulators at every block.
  float block_scale[kFp8ChunkBlocks];
  for (int b = 0; b < kFp8ChunkBlocks && k0 + b * kFp8Block < k1; ++b)
    block_scale[b] = w.scale(row, k0 + b * kFp8Block) * 256.0f;
  __m512 scale = _mm512_set1_ps(block_scale[0]);
  int i = k0;
  for (; i + 16 <= k1; i += 16) {
    if (((i - k0) & (kFp8Block - 1)) == 0) scale = _mm512_set1_ps(block_scale[(i - k0) / kFp8Block]);
    __m512 wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = load16_fp8(wp + r * ws + static_cast<size_t>(i));
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      __m512 xv = _mm512_loadu_ps(x + t * xs + i);
      __asm__("" : "+v"(xv));
      xv = _mm512_mul_ps(xv, scale);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
  // The 8-column step at the row's end, written out again: shared with the
  // loop above as a lambda or a macro, GCC kept the accumulators in memory
  // in the loop (25 stack accesses per step).
  if (i + 8 <= k1) {  // in the row's last block
    if (((i - k0) & (kFp8Block - 1)) == 0) scale = _mm512_set1_ps(block_scale[(i - k0) / kFp8Block]);
    __m512 wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = load8_fp8_wide(wp + r * ws + static_cast<size_t>(i));
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const __m512 xv = _mm512_mul_ps(_mm512_maskz_loadu_ps(0xFF, x + t * xs + i), scale);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
    i += 8;
  }
  if (k1 < w.cols) {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) _mm512_storeu_ps(spill + 16 * (t * NR + r), acc[t][r]);
    return;
  }
  for (int t = 0; t < NT; ++t) {
    for (int r = 0; r < NR; ++r) {
      float s = hsum16(acc[t][r]);
      for (int j = i; j < w.cols; ++j) s += x[t * xs + j] * weight_value<DType::F8_E4M3>(w, wp + r * ws, row + r, j);
      y[t * ys + r] = s;
    }
  }
}

template <int NR, int NT>
inline void fp8_tokens_512(const float* x, size_t xs, int n, const Weight& w, int row, const std::byte* wp, size_t ws,
                           int k0, int k1, float* spill, float* y, size_t ys) {
  int t = 0;
  for (; t + NT <= n; t += NT, spill += 16 * NT * NR)
    fp8_chunk_512<NT, NR>(x + t * xs, xs, w, row, wp, ws, k0, k1, spill, y + t * ys, ys);
  if constexpr (NT > 1) {
    if (t < n) fp8_tokens_512<NR, NT - 1>(x + t * xs, xs, n - t, w, row, wp, ws, k0, k1, spill, y + t * ys, ys);
  }
}

template <int NR>
void fp8_rows_block_512(const float* x, size_t xs, int n, const Weight& w, int row, const std::byte* wp, size_t ws,
                        float* y, size_t ys) {
  thread_local std::vector<float> spill;
  spill.resize(static_cast<size_t>(n + kFp8TokenTile) * NR * 16);
  for (int k0 = 0; k0 < w.cols; k0 += kFp8ColumnChunk)
    fp8_tokens_512<NR, kFp8TokenTile>(x, xs, n, w, row, wp, ws, k0, std::min(w.cols, k0 + kFp8ColumnChunk),
                                      spill.data(), y, ys);
}
#pragma GCC diagnostic pop
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define MOTE_AVX512 1
// GCC 12's 512-bit conversions start from an undefined register and warn about it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The 16-bit and fp32 micro-kernel on 512-bit registers: NT tokens x NR
// rows, one accumulator per (token, row), 16-column steps with the last one
// masked (its zero lanes add nothing), then a fixed-order reduction. Wide
// tiles matter for prefill: each widened weight vector feeds NT products and
// each activation vector NR, where 2x4 on 256 bits spent most of its
// instructions on loads and widening.
template <DType DT>
inline __m512 load16(const std::byte* p, __mmask16 m) {
  if constexpr (DT == DType::F32) {
    return _mm512_maskz_loadu_ps(m, p);
  } else if constexpr (DT == DType::BF16) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
  } else {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
}

// Columns [k0, k1) of an NT x NR tile. The accumulators live in `spill`
// between column chunks (raw vectors, so each lane sums the same products
// in the same order as one pass over the row would); the last chunk reduces
// them into y.
template <DType DT, int NT, int NR>
void micro_kernel_512(const float* x, size_t xs, const Weight& w, const std::byte* wp, size_t ws, int k0, int k1,
                      float* spill, float* y, size_t ys) {
  constexpr size_t esize = kElementSize<DT>;
  // Every loop over the tile is unrolled explicitly: otherwise GCC keeps the
  // accumulator array in memory and stores all of it on every step.
  __m512 acc[NT][NR];
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) acc[t][r] = k0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(spill + 16 * (t * NR + r));
      // One 16-column step; masked for the row's last columns. With one or two
      // tokens the step waits on memory, so it prefetches the next row block.
      // The prefetches stay one instruction in a loop: unrolled into NR
      // instructions next to the NR loads, decode streamed 10-15% slower (more
      // instruction addresses for the core's stride prefetcher to track).
#define MOTE_STEP_512(I, M)                                                                                        \
  {                                                                                                                \
    if constexpr (NT <= 2) {                                                                                       \
      _Pragma("GCC unroll 1") for (int r = 0; r < NR; ++r) _mm_prefetch(                                           \
          reinterpret_cast<const char*>(wp + (kRowBlock + r) * ws + static_cast<size_t>(I) * esize), _MM_HINT_T0); \
    }                                                                                                              \
    __m512 wv[NR];                                                                                                 \
    _Pragma("GCC unroll 8") for (int r = 0; r < NR; ++r) wv[r] =                                                   \
        load16<DT>(wp + r * ws + static_cast<size_t>(I) * esize, M);                                               \
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; ++t) {                                                         \
      /* An empty asm holds xv in a register: otherwise GCC folds the load */                                      \
      /* into each of the NR multiply-adds, and the loads, not the */                                              \
      /* multiply-adds, bound the kernel (half the speed on Zen 5). */                                             \
      __m512 xv = _mm512_maskz_loadu_ps(M, x + t * xs + (I));                                                      \
      __asm__("" : "+v"(xv));                                                                                      \
      _Pragma("GCC unroll 8") for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);      \
    }                                                                                                              \
  }
  int i = k0;
  for (; i + 16 <= k1; i += 16) MOTE_STEP_512(i, static_cast<__mmask16>(0xFFFF))
  if (i < k1) MOTE_STEP_512(i, static_cast<__mmask16>((1u << (k1 - i)) - 1))
#undef MOTE_STEP_512
  if (k1 < w.cols) {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) _mm512_storeu_ps(spill + 16 * (t * NR + r), acc[t][r]);
    return;
  }
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) y[t * ys + r] = hsum16(acc[t][r]);
}

// Columns per chunk: one chunk of the row block's weights stays in L1 while
// every token tile of the block passes over it. A multiple of 16.
constexpr int kColumnChunk = 512;

template <DType DT, int NR, int NT>
inline void tokens_512(const float* x, size_t xs, int n, const Weight& w, const std::byte* wp, size_t ws, int k0,
                       int k1, float* spill, float* y, size_t ys) {
  int t = 0;
  for (; t + NT <= n; t += NT, spill += 16 * NT * NR)
    micro_kernel_512<DT, NT, NR>(x + t * xs, xs, w, wp, ws, k0, k1, spill, y + t * ys, ys);
  if constexpr (NT > 1) {
    if (t < n) tokens_512<DT, NR, NT - 1>(x + t * xs, xs, n - t, w, wp, ws, k0, k1, spill, y + t * ys, ys);
  }
}

template <DType DT, int NR>
void rows_block_512(const float* x, size_t xs, int n, const Weight& w, const std::byte* wp, size_t ws, float* y,
                    size_t ys) {
  if (n == 1) {
    // One pass over the rows: the same lane order as the chunks below.
    micro_kernel_512<DT, 1, NR>(x, xs, w, wp, ws, 0, w.cols, nullptr, y, ys);
    return;
  }
  thread_local std::vector<float> spill;
  spill.resize(static_cast<size_t>(n + kTokenTile) * NR * 16);
  for (int k0 = 0; k0 < w.cols; k0 += kColumnChunk)
    tokens_512<DT, NR, kTokenTile>(x, xs, n, w, wp, ws, k0, std::min(w.cols, k0 + kColumnChunk), spill.data(), y, ys);
}
#pragma GCC diagnostic pop
#endif

// Whether rows [row, row + nr) of `w` lie in one 128-row block of scales.
inline bool rows_share_scales(const Weight& w, int row, int nr) {
  return (w.scale_row0 + row) / kFp8Block == (w.scale_row0 + row + nr - 1) / kFp8Block;
}

// NT tokens x NR weight rows (rows `row`.. of `w`, starting at `wp`). Each
// (token, row) pair owns one accumulator and sees the same sequence of
// operations whatever NT and NR are. FP8 rows are walked block by block so
// each 128-column block's scale is loaded once.
template <DType DT, int NT, int NR, bool kShared = false, bool kPrefetch = false>
void micro_kernel(const float* x, size_t xs, const Weight& w, int row, const std::byte* wp, size_t ws, float* y,
                  size_t ys) {
  constexpr size_t esize = kElementSize<DT>;
  const int cols = w.cols;
  __m256 acc[NT][NR];
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm256_setzero_ps();
  int i = 0;
  const int block = DT == DType::F8_E4M3 ? kFp8Block : cols;
  for (int block_begin = 0; block_begin < cols; block_begin += block) {
    const int block_end = std::min(cols, block_begin + block);
    [[maybe_unused]] __m256 scale[NR];
    if constexpr (DT == DType::F8_E4M3) {
      for (int r = 0; r < NR; ++r) scale[r] = fp8_scale(w, row + r, block_begin);
    }
    for (; i + 8 <= block_end; i += 8) {
      // As in micro_kernel_512: the next row block, one instruction in a
      // loop; for FP8, short of instructions here, once per 64-byte line.
      if (kPrefetch && (DT != DType::F8_E4M3 || i % 64 == 0)) {
#pragma GCC unroll 1
        for (int r = 0; r < NR; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(wp + (kRowBlock + r) * ws + static_cast<size_t>(i) * esize),
                       _MM_HINT_T0);
      }
      __m256 wv[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        if constexpr (DT == DType::F8_E4M3) {
          wv[r] = load8_fp8(wp + r * ws + static_cast<size_t>(i));
          if constexpr (!kShared) wv[r] = _mm256_mul_ps(wv[r], scale[r]);
        } else {
          wv[r] = load8<DT>(wp + r * ws + static_cast<size_t>(i) * esize);
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        __m256 xv = _mm256_loadu_ps(x + t * xs + i);
        __asm__("" : "+x"(xv));  // one load, not one per multiply-add (see MOTE_STEP_512)
        if constexpr (kShared) xv = _mm256_mul_ps(xv, scale[0]);
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) {
    for (int r = 0; r < NR; ++r) {
      float s = hsum(acc[t][r]);
      for (int j = i; j < cols; ++j) s += x[t * xs + j] * weight_value<DT>(w, wp + r * ws, row + r, j);
      y[t * ys + r] = s;
    }
  }
}

// 2^(e - 128) for each e8m0 byte e: an MXFP4 block's scale, halved because
// the kernel's codes are twice their e2m1 values (255, NaN, is refused at load).
const std::array<float, 256> kHalfE8m0 = [] {
  std::array<float, 256> t{};
  for (int e = 0; e < 256; ++e) t[static_cast<size_t>(e)] = 0.5f * Weight::e8m0_to_float(static_cast<uint8_t>(e));
  return t;
}();

// The 32 codes of one MXFP4 block (16 bytes) as twice their e2m1 values,
// small integers (0, 1, 2, 3, 4, 6, 8, 12 and negatives) looked up with a
// byte shuffle: the even columns (low nibbles) and the odd ones (high).
inline void mxfp4_codes(const std::byte* p, __m128i& even, __m128i& odd) {
  const __m128i table = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
  const __m128i nibble = _mm_set1_epi8(0x0F);
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  even = _mm_shuffle_epi8(table, _mm_and_si128(bytes, nibble));
  odd = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble));
}

inline __m256 widen8_codes(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// The activations in the order the kernel reads a block's codes: for each
// block of 32 columns, its 16 even columns, then its 16 odd ones. One
// buffer per thread, reused.
const float* mxfp4_activation_order(const float* x, size_t xs, int n, int cols) {
  thread_local std::vector<float> ordered;
  ordered.resize(static_cast<size_t>(n) * cols);
  for (int t = 0; t < n; ++t) {
    const float* in = x + static_cast<size_t>(t) * xs;
    float* out = ordered.data() + static_cast<size_t>(t) * cols;
    for (int c = 0; c < cols; c += kMxfp4Block) {
      for (int j = 0; j < kMxfp4Block / 2; ++j) {
        out[c + j] = in[c + 2 * j];
        out[c + kMxfp4Block / 2 + j] = in[c + 2 * j + 1];
      }
    }
  }
  return ordered.data();
}

// NT tokens x NR rows of an MXFP4 weight, the activations in
// mxfp4_activation_order. Per block, each (token, row) pair sums its 32
// products of codes and activations (one multiply, three multiply-adds of
// 8 lanes) and adds that sum times the block's scale (a power of two, so
// exact) to its accumulator: the same operations whatever NT and NR are.
template <int NT, int NR, bool kPrefetch = false>
void mxfp4_kernel(const float* x, size_t xs, const Weight& w, int row, const std::byte* wp, size_t ws, float* y,
                  size_t ys) {
  const int blocks = w.cols / kMxfp4Block;
  const auto* sp = reinterpret_cast<const uint8_t*>(w.scales) + static_cast<size_t>(row) * blocks;
  __m256 acc[NT][NR];
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm256_setzero_ps();
  for (int b = 0; b < blocks; ++b) {
    const size_t col = static_cast<size_t>(b) * kMxfp4Block;
    // Decode waits on memory: the next row block's line, one instruction
    // per row each 64 bytes (4 blocks), as the other decode kernels do.
    if (kPrefetch && b % 4 == 0) {
#pragma GCC unroll 1
      for (int r = 0; r < NR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(wp + (kRowBlock + r) * ws + col / 2), _MM_HINT_T0);
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      __m128i even, odd;
      mxfp4_codes(wp + r * ws + col / 2, even, odd);
      const __m256 w0 = widen8_codes(even), w1 = widen8_codes(_mm_srli_si128(even, 8));
      const __m256 w2 = widen8_codes(odd), w3 = widen8_codes(_mm_srli_si128(odd, 8));
      const __m256 scale = _mm256_set1_ps(kHalfE8m0[sp[r * blocks + b]]);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const float* xb = x + t * xs + col;
        __m256 sum = _mm256_mul_ps(_mm256_loadu_ps(xb), w0);
        sum = _mm256_fmadd_ps(_mm256_loadu_ps(xb + 8), w1, sum);
        sum = _mm256_fmadd_ps(_mm256_loadu_ps(xb + 16), w2, sum);
        sum = _mm256_fmadd_ps(_mm256_loadu_ps(xb + 24), w3, sum);
        acc[t][r] = _mm256_fmadd_ps(sum, scale, acc[t][r]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < NR; ++r) y[t * ys + r] = hsum(acc[t][r]);
}

template <int NR>
void mxfp4_rows_block(const float* x, size_t xs, int n, const Weight& w, int row, const std::byte* wp, size_t ws,
                      float* y, size_t ys) {
  if (n <= 2) {
    if (n == 2)
      mxfp4_kernel<2, NR, true>(x, xs, w, row, wp, ws, y, ys);
    else
      mxfp4_kernel<1, NR, true>(x, xs, w, row, wp, ws, y, ys);
    return;
  }
  // Prefill: 4 tokens x 2 rows at a time (8 accumulators, 4 weight vectors).
  for (int r = 0; r < NR; r += 2) {
    const int nr = std::min(2, NR - r);
    const std::byte* wr = wp + r * ws;
    int t = 0;
    for (; t + 4 <= n; t += 4) {
      if (nr == 2)
        mxfp4_kernel<4, 2>(x + t * xs, xs, w, row + r, wr, ws, y + t * ys + r, ys);
      else
        mxfp4_kernel<4, 1>(x + t * xs, xs, w, row + r, wr, ws, y + t * ys + r, ys);
    }
    for (; t < n; ++t) {
      if (nr == 2)
        mxfp4_kernel<1, 2>(x + t * xs, xs, w, row + r, wr, ws, y + t * ys + r, ys);
      else
        mxfp4_kernel<1, 1>(x + t * xs, xs, w, row + r, wr, ws, y + t * ys + r, ys);
    }
  }
}

#ifndef MOTE_AVX512
// Prefill on 256-bit registers: 6 tokens x 2 rows (12 accumulators), each
// pair of rows of the block in turn. Each widened weight vector then feeds
// 6 products where 2 x 4 fed 2: widening, not the multiply-adds, bounded
// 2 x 4 on Zen 3 (R1's expert products, one thread: 59 to 65-75 GFLOP/s).
template <DType DT, int NR, bool kShared = false>
void tokens_256(const float* x, size_t xs, int n, const Weight& w, int row, const std::byte* wp, size_t ws, float* y,
                size_t ys) {
  int t = 0;
  for (; t + 6 <= n; t += 6) micro_kernel<DT, 6, NR, kShared>(x + t * xs, xs, w, row, wp, ws, y + t * ys, ys);
  x += t * xs, y += t * ys;
  switch (n - t) {
    case 5:
      micro_kernel<DT, 5, NR, kShared>(x, xs, w, row, wp, ws, y, ys);
      break;
    case 4:
      micro_kernel<DT, 4, NR, kShared>(x, xs, w, row, wp, ws, y, ys);
      break;
    case 3:
      micro_kernel<DT, 3, NR, kShared>(x, xs, w, row, wp, ws, y, ys);
      break;
    case 2:
      micro_kernel<DT, 2, NR, kShared>(x, xs, w, row, wp, ws, y, ys);
      break;
    case 1:
      micro_kernel<DT, 1, NR, kShared>(x, xs, w, row, wp, ws, y, ys);
      break;
    default:
      break;
  }
}

template <DType DT, int NR, bool kShared = false>
void prefill_rows_256(const float* x, size_t xs, int n, const Weight& w, int row, const std::byte* wp, size_t ws,
                      float* y, size_t ys) {
  for (int r = 0; r < NR; r += 2) {
    if (NR - r >= 2)
      tokens_256<DT, 2, kShared>(x, xs, n, w, row + r, wp + r * ws, ws, y + r, ys);
    else
      tokens_256<DT, 1, kShared>(x, xs, n, w, row + r, wp + r * ws, ws, y + r, ys);
  }
}
#endif

template <DType DT, int NR>
void rows_block(const float* x, size_t xs, int n, const Weight& w, int row, const std::byte* wp, size_t ws, float* y,
                size_t ys) {
  if constexpr (DT == DType::MXFP4) {
    mxfp4_rows_block<NR>(x, xs, n, w, row, wp, ws, y, ys);
    return;
  }
  if constexpr (DT == DType::F8_E4M3) {
    // The scale is folded into the activations where a row block shares it
    // (always, but in row slices that start inside a block), else into each weight.
    const bool shared = rows_share_scales(w, row, NR);
    int t = 0;
#if defined(__AVX512F__)
    if (n > 2 && shared) {
      fp8_rows_block_512<NR>(x, xs, n, w, row, wp, ws, y, ys);
      return;
    }
    // Prefetching pays where one or two tokens leave the step waiting on
    // memory (decode), and costs a fifth of a larger batch's speed.
    const auto kernel2 =
        n > 2 ? (shared ? micro_kernel_fp8_512<2, NR, true, false> : micro_kernel_fp8_512<2, NR, false, false>)
              : (shared ? micro_kernel_fp8_512<2, NR, true, true> : micro_kernel_fp8_512<2, NR, false, true>);
    const auto kernel1 =
        n > 2 ? (shared ? micro_kernel_fp8_512<1, NR, true, false> : micro_kernel_fp8_512<1, NR, false, false>)
              : (shared ? micro_kernel_fp8_512<1, NR, true, true> : micro_kernel_fp8_512<1, NR, false, true>);
#else
    if (n > 2 && shared) {
      prefill_rows_256<DT, NR, true>(x, xs, n, w, row, wp, ws, y, ys);
      return;
    }
    const auto kernel2 = n > 2 ? (shared ? micro_kernel<DT, 2, NR, true> : micro_kernel<DT, 2, NR, false>)
                               : (shared ? micro_kernel<DT, 2, NR, true, true> : micro_kernel<DT, 2, NR, false, true>);
    const auto kernel1 = n > 2 ? (shared ? micro_kernel<DT, 1, NR, true> : micro_kernel<DT, 1, NR, false>)
                               : (shared ? micro_kernel<DT, 1, NR, true, true> : micro_kernel<DT, 1, NR, false, true>);
#endif
    for (; t + 2 <= n; t += 2) kernel2(x + t * xs, xs, w, row, wp, ws, y + t * ys, ys);
    if (t < n) kernel1(x + t * xs, xs, w, row, wp, ws, y + t * ys, ys);
    return;
  }
#ifdef MOTE_AVX512
  rows_block_512<DT, NR>(x, xs, n, w, wp, ws, y, ys);
#else
  if (n <= 2) {  // decode: prefetching pays
    if (n == 2)
      micro_kernel<DT, 2, NR, false, true>(x, xs, w, row, wp, ws, y, ys);
    else
      micro_kernel<DT, 1, NR, false, true>(x, xs, w, row, wp, ws, y, ys);
    return;
  }
  prefill_rows_256<DT, NR>(x, xs, n, w, row, wp, ws, y, ys);
#endif
}

#else  // portable fallback: one accumulator per output, same order for any batch

template <DType DT, int NR>
void rows_block(const float* x, size_t xs, int n, const Weight& w, int row, const std::byte* wp, size_t ws, float* y,
                size_t ys) {
  for (int t = 0; t < n; ++t) {
    for (int r = 0; r < NR; ++r) {
      float s = 0.0f;
      for (int j = 0; j < w.cols; ++j) s += x[t * xs + j] * weight_value<DT>(w, wp + r * ws, row + r, j);
      y[t * ys + r] = s;
    }
  }
}

#endif

// Tokens per cache block: the activations of one block (block x cols fp32)
// stay in the core's L2 while every row block of the thread's share of the
// weights passes over them, instead of streaming all tokens' activations from
// L3 once per 4 weight rows. A multiple of the register tile.
int token_block(int cols) {
  constexpr int kBlockBytes = 384 << 10;
  const int fit = kBlockBytes / (4 * std::max(cols, 1));
  return std::clamp(fit / kTokenTile * kTokenTile, 2 * kTokenTile, 16 * kTokenTile);
}

// Row blocks [b_begin, b_end) of one product, token block by token block:
// every output element is still one accumulation over its full row,
// whatever the blocking and the thread that runs it.
template <DType DT>
void product_rows(const MatmulJob& job, int b_begin, int b_end) {
  const Weight& w = *job.w;
  const size_t ws = w.row_bytes();
  const int tokens_per_block = token_block(w.cols);
  for (int t0 = 0; t0 < job.n; t0 += tokens_per_block) {
    const int nt = std::min(tokens_per_block, job.n - t0);
    const float* xt = job.x + static_cast<size_t>(t0) * job.x_stride;
    size_t xs = job.x_stride;
#ifdef MOTE_AVX2
    if constexpr (DT == DType::MXFP4) {
      xt = mxfp4_activation_order(xt, xs, nt, w.cols);
      xs = static_cast<size_t>(w.cols);
    }
#endif
    for (int b = b_begin; b < b_end; ++b) {
      const int r0 = b * kRowBlock;
      const std::byte* wr = w.data + static_cast<size_t>(r0) * ws;
      float* yr = job.y + static_cast<size_t>(t0) * job.y_stride + r0;
      const size_t ys = job.y_stride;
      switch (std::min(kRowBlock, w.rows - r0)) {
        case 4:
          rows_block<DT, 4>(xt, xs, nt, w, r0, wr, ws, yr, ys);
          break;
        case 3:
          rows_block<DT, 3>(xt, xs, nt, w, r0, wr, ws, yr, ys);
          break;
        case 2:
          rows_block<DT, 2>(xt, xs, nt, w, r0, wr, ws, yr, ys);
          break;
        default:
          rows_block<DT, 1>(xt, xs, nt, w, r0, wr, ws, yr, ys);
          break;
      }
    }
  }
}

void product_rows(const MatmulJob& job, int b_begin, int b_end) {
  switch (job.w->dtype) {
    case DType::MXFP4:
      product_rows<DType::MXFP4>(job, b_begin, b_end);
      break;
    case DType::F8_E4M3:
      product_rows<DType::F8_E4M3>(job, b_begin, b_end);
      break;
    case DType::BF16:
      product_rows<DType::BF16>(job, b_begin, b_end);
      break;
    case DType::F16:
      product_rows<DType::F16>(job, b_begin, b_end);
      break;
    default:
      product_rows<DType::F32>(job, b_begin, b_end);
      break;
  }
}

#ifdef MOTE_AVX512
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Columns [c0, c0 + 64) of y = x W for NT tokens, clipped to [0, c_end):
// 4 x 16 columns x NT tokens of accumulators, each lane one multiply-add
// chain over the rows in order, as in columns_tile_256 below, so both give
// the same bits. A row's 64 columns are widened once for all NT tokens.
template <DType DT, int NT>
void columns_tile_512(const float* x, size_t xs, const Weight& w, int c0, int c_end, float* y, size_t ys) {
  constexpr size_t esize = kElementSize<DT>;
  constexpr int kVectors = 4;
  const size_t ws = w.row_bytes();
  __mmask16 mask[kVectors];
#pragma GCC unroll 4
  for (int j = 0; j < kVectors; ++j) {
    const int left = std::clamp(c_end - (c0 + 16 * j), 0, 16);
    mask[j] = static_cast<__mmask16>((1u << left) - 1);
  }
  __m512 acc[NT][kVectors];
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int j = 0; j < kVectors; ++j) acc[t][j] = _mm512_setzero_ps();
  for (int r = 0; r < w.rows; ++r) {
    const std::byte* wr = w.data + static_cast<size_t>(r) * ws + static_cast<size_t>(c0) * esize;
    __m512 wv[kVectors];
#pragma GCC unroll 4
    for (int j = 0; j < kVectors; ++j) {
      if constexpr (DT == DType::F8_E4M3) {
        // As load8_fp8 times fp8_scale: 16 columns lie in one 128-column block.
        const __m512 v = widen16_fp8(_mm_maskz_loadu_epi8(mask[j], wr + 16 * j));
        wv[j] = mask[j] != 0 ? _mm512_mul_ps(v, _mm512_set1_ps(w.scale(r, c0 + 16 * j) * 256.0f)) : v;
      } else {
        wv[j] = load16<DT>(wr + static_cast<size_t>(16 * j) * esize, mask[j]);
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      const __m512 xv = _mm512_set1_ps(x[t * xs + r]);
#pragma GCC unroll 4
      for (int j = 0; j < kVectors; ++j) acc[t][j] = _mm512_fmadd_ps(xv, wv[j], acc[t][j]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int j = 0; j < kVectors; ++j) _mm512_mask_storeu_ps(y + t * ys + c0 + 16 * j, mask[j], acc[t][j]);
}

template <DType DT>
void columns_512(const float* x, size_t xs, int n, const Weight& w, int c_end, float* y, size_t ys) {
  constexpr int kTokens = 4;
  // A column tile's weights (rows x 64) stay in L1 while the token tiles pass.
  for (int c0 = 0; c0 < c_end; c0 += 64) {
    int t = 0;
    for (; t + kTokens <= n; t += kTokens) columns_tile_512<DT, kTokens>(x + t * xs, xs, w, c0, c_end, y + t * ys, ys);
    switch (n - t) {
      case 3:
        columns_tile_512<DT, 3>(x + t * xs, xs, w, c0, c_end, y + t * ys, ys);
        break;
      case 2:
        columns_tile_512<DT, 2>(x + t * xs, xs, w, c0, c_end, y + t * ys, ys);
        break;
      case 1:
        columns_tile_512<DT, 1>(x + t * xs, xs, w, c0, c_end, y + t * ys, ys);
        break;
      default:
        break;
    }
  }
}
#pragma GCC diagnostic pop
#endif

#if defined(MOTE_AVX2) && !defined(MOTE_AVX512)
// Columns [c0, c0 + 8 NV) of y = x W for NT tokens on 256-bit registers:
// NT x NV accumulators, each lane one multiply-add chain over the rows in
// order, as in columns_tile_512. 4 x 3 fills the 16 registers
// (12 accumulators, 3 widened weight vectors, 1 broadcast activation), so a
// row's 24 columns are widened once for 4 tokens instead of once per token.
template <DType DT, int NT, int NV>
void columns_tile_256(const float* x, size_t xs, const Weight& w, int c0, float* y, size_t ys) {
  constexpr size_t esize = kElementSize<DT>;
  const size_t ws = w.row_bytes();
  const int rows = w.rows;
  // Every loop over the tile unrolled, or GCC keeps the accumulators in memory.
  __m256 acc[NT][NV];
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[t][j] = _mm256_setzero_ps();
  const std::byte* wr = w.data + static_cast<size_t>(c0) * esize;
  for (int r = 0; r < rows; ++r, wr += ws) {
    __m256 wv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      if constexpr (DT == DType::F8_E4M3) {
        wv[j] = _mm256_mul_ps(load8_fp8(wr + 8 * j), fp8_scale(w, r, c0 + 8 * j));
      } else {
        wv[j] = load8<DT>(wr + static_cast<size_t>(8 * j) * esize);
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      const __m256 xv = _mm256_broadcast_ss(x + t * xs + r);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[t][j] = _mm256_fmadd_ps(xv, wv[j], acc[t][j]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(y + t * ys + c0 + 8 * j, acc[t][j]);
}

template <DType DT, int NV>
void columns_tokens_256(const float* x, size_t xs, int n, const Weight& w, int c0, float* y, size_t ys) {
  int t = 0;
  for (; t + 4 <= n; t += 4) columns_tile_256<DT, 4, NV>(x + t * xs, xs, w, c0, y + t * ys, ys);
  switch (n - t) {
    case 3:
      columns_tile_256<DT, 3, NV>(x + t * xs, xs, w, c0, y + t * ys, ys);
      break;
    case 2:
      columns_tile_256<DT, 2, NV>(x + t * xs, xs, w, c0, y + t * ys, ys);
      break;
    case 1:
      columns_tile_256<DT, 1, NV>(x + t * xs, xs, w, c0, y + t * ys, ys);
      break;
    default:
      break;
  }
}

// Columns [0, c_end), c_end a multiple of 8: a column tile's weights
// (rows x 24) stay in L1 while the token tiles pass.
template <DType DT>
void columns_256(const float* x, size_t xs, int n, const Weight& w, int c_end, float* y, size_t ys) {
  int c0 = 0;
  for (; c0 + 24 <= c_end; c0 += 24) columns_tokens_256<DT, 3>(x, xs, n, w, c0, y, ys);
  if (c_end - c0 == 16) columns_tokens_256<DT, 2>(x, xs, n, w, c0, y, ys);
  if (c_end - c0 == 8) columns_tokens_256<DT, 1>(x, xs, n, w, c0, y, ys);
}
#endif

template <DType DT>
void matmul_by_columns_typed(const float* x, size_t xs, int n, const Weight& w, float* y, size_t ys) {
  const size_t ws = w.row_bytes();
  // Whole groups of 8 columns in the tiles; the rest as below.
  [[maybe_unused]] const int wide = w.cols / 8 * 8;
#if defined(MOTE_AVX512)
  columns_512<DT>(x, xs, n, w, wide, y, ys);
#elif defined(MOTE_AVX2)
  columns_256<DT>(x, xs, n, w, wide, y, ys);
#endif
  for (int t = 0; t < n; ++t) {
    float* yt = y + t * ys;
    const float* xt = x + t * xs;
    int c = 0;
#if defined(MOTE_AVX2)
    c = wide;
#endif
    for (; c < w.cols; ++c) {
      float s = 0.0f;
      for (int r = 0; r < w.rows; ++r) s += xt[r] * weight_value<DT>(w, w.data + r * ws, r, c);
      yt[c] = s;
    }
  }
}

}  // namespace

void matmul_group(std::span<const MatmulJob> jobs) {
  // Work is split by multiply-adds, not by rows: chunk c holds the row
  // blocks whose cumulative work starts in [c, c+1) / chunks. One parallel
  // loop for all the products (the experts of a layer, say) instead of one
  // each: fewer waits at loop ends, and a thread that finishes one product
  // goes on to the next.
  int64_t total = 0, blocks_total = 0;
  for (const MatmulJob& j : jobs) {
    if (j.n <= 0 || j.w->rows == 0) continue;
    g_weight_bytes.fetch_add(j.w->bytes() + j.w->scale_bytes(), std::memory_order_relaxed);
    total += static_cast<int64_t>(j.n) * j.w->rows * j.w->cols;
    blocks_total += (j.w->rows + kRowBlock - 1) / kRowBlock;
  }
  if (total == 0) return;
  // Several chunks per thread, so a thread that runs slower (another
  // process on its core) takes fewer of them.
  const int64_t chunks = total >= kParallelThreshold ? std::min<int64_t>(blocks_total, 4 * parallel_threads()) : 1;
  parallel_for(static_cast<int>(chunks), [&](int chunk, int) {
    const int64_t share_begin = total * chunk / chunks, share_end = total * (chunk + 1) / chunks;
    int64_t done = 0;  // work before the current product
    for (const MatmulJob& j : jobs) {
      if (j.n <= 0 || j.w->rows == 0) continue;
      const int blocks = (j.w->rows + kRowBlock - 1) / kRowBlock;
      const int64_t per_block = static_cast<int64_t>(j.n) * kRowBlock * j.w->cols;
      const int64_t work = static_cast<int64_t>(j.n) * j.w->rows * j.w->cols;
      if (done + work > share_begin && done < share_end) {
        // Blocks whose start falls in [share_begin, share_end).
        const auto first_at_or_after = [&](int64_t point) {
          return static_cast<int>(std::clamp<int64_t>((point - done + per_block - 1) / per_block, 0, blocks));
        };
        const int b_begin = first_at_or_after(share_begin), b_end = first_at_or_after(share_end);
        if (b_begin < b_end) product_rows(j, b_begin, b_end);
      }
      done += work;
    }
  });
}

void matmul(const float* x, size_t x_stride, int n, const Weight& w, float* y, size_t y_stride) {
  const MatmulJob job{x, x_stride, n, &w, y, y_stride};
  matmul_group({&job, 1});
}

void matmul_by_columns(const float* x, size_t x_stride, int n, const Weight& w, float* y, size_t y_stride) {
  if (n <= 0 || w.cols == 0) return;
  g_weight_bytes.fetch_add(w.bytes() + w.scale_bytes(), std::memory_order_relaxed);
  switch (w.dtype) {
    case DType::MXFP4:
      fail("matmul_by_columns: MXFP4 weights are only multiplied by rows");
    case DType::F8_E4M3:
      matmul_by_columns_typed<DType::F8_E4M3>(x, x_stride, n, w, y, y_stride);
      break;
    case DType::BF16:
      matmul_by_columns_typed<DType::BF16>(x, x_stride, n, w, y, y_stride);
      break;
    case DType::F16:
      matmul_by_columns_typed<DType::F16>(x, x_stride, n, w, y, y_stride);
      break;
    default:
      matmul_by_columns_typed<DType::F32>(x, x_stride, n, w, y, y_stride);
      break;
  }
}

uint64_t weight_bytes_streamed() { return g_weight_bytes.load(std::memory_order_relaxed); }

}  // namespace mote
