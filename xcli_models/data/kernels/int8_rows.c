/* xcli's int8 kernels (xcli_models/native.py builds and loads this file; see its docstring):
 * xcli_int8_rows, a few rows of float32 inputs times int8 weights with a float32 scale per output
 * channel, for the decode steps of generation; xcli_quantize_rows (below), float32 rows rounded to
 * int8 for the int8 products of the task commands.
 *
 *   out[m, n] = scale[n] * sum_k x[m, k] * w[n, k]  (+ bias[n])
 *
 * The weights come blocked (native.py's block_rows): BLOCK output channels at a time, 16 inputs of
 * each channel after another, so that a block is read as one forward stream, (N / BLOCK, K / 16,
 * BLOCK, 16) int8, N padded with zero channels to a multiple of BLOCK. Every weight is widened to
 * float32 and multiplied in float32: inputs are not rounded. Each output is summed in the same order
 * whatever the number of rows, so a row's numbers do not depend on the rows beside it. */
#include <immintrin.h>
#include <stdint.h>

#define BLOCK 8
/* bytes ahead of the block being read that are asked for early (2 KiB slower; 4-16 KiB alike within
 * the noise of a shared host's bandwidth, measured on XGLM-564M's projections) */
#define AHEAD 4096

static inline __attribute__((always_inline)) void block_rows(
    const float *x, int64_t K, const int8_t *w, int rows, float out[3][BLOCK]) {
  __m512 acc[3][BLOCK];
  for (int j = 0; j < 3; j++)
    for (int r = 0; r < BLOCK; r++) acc[j][r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const int8_t *p = w + k * BLOCK;
    _mm_prefetch((const char *)(p + AHEAD), _MM_HINT_T1); /* a hint: never faults past the end */
    _mm_prefetch((const char *)(p + AHEAD + 64), _MM_HINT_T1);
    __m512 xs[3];
    for (int j = 0; j < rows; j++) xs[j] = _mm512_loadu_ps(x + j * K + k);
    for (int r = 0; r < BLOCK; r++) {
      __m512 wr = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + r * 16))));
      for (int j = 0; j < rows; j++) acc[j][r] = _mm512_fmadd_ps(wr, xs[j], acc[j][r]);
    }
  }
  for (int j = 0; j < rows; j++)
    for (int r = 0; r < BLOCK; r++) out[j][r] = _mm512_reduce_add_ps(acc[j][r]);
}

/* x (M, K) float32, K a multiple of 16; w blocked as above for N channels; scale (N,); bias (N,) or
 * NULL; out (M, N) float32. Rows go up to three at a time through a block, its weights widened once
 * for them (24 accumulators, the weight and three inputs fit the 32 vector registers): 8 rows 15%
 * faster than two at a time, 3 rows 25% (XGLM-564M's projections, 2 threads, measured). */
void xcli_int8_rows(const float *x, int64_t M, const int8_t *w, const float *scale, const float *bias,
                    float *out, int64_t N, int64_t K) {
  int64_t blocks = (N + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; b++) {
    const int8_t *wb = w + b * BLOCK * K;
    int64_t first = b * BLOCK, count = N - first < BLOCK ? N - first : BLOCK;
    int rows;
    for (int64_t m = 0; m < M; m += rows) {
      float sums[3][BLOCK];
      rows = M - m == 4 ? 2 : M - m < 3 ? (int)(M - m) : 3; /* 4 rows as 2 + 2, not 3 + 1 */
      if (rows == 3)
        block_rows(x + m * K, K, wb, 3, sums);
      else if (rows == 2)
        block_rows(x + m * K, K, wb, 2, sums);
      else
        block_rows(x + m * K, K, wb, 1, sums);
      for (int j = 0; j < rows; j++)
        for (int64_t r = 0; r < count; r++) {
          float v = sums[j][r] * scale[first + r];
          out[(m + j) * N + first + r] = bias ? v + bias[first + r] : v;
        }
    }
  }
}

/* Each row of x (M, K) float32 rounded to int8 with its own scale, as Int8Linear does it in torch:
 *   scale[m] = max(max_k |x[m, k]|, 1e-12) / 127,  q[m, k] = clamp(round_half_even(x[m, k] / scale[m]), -127, 127)
 * the same float32 operations in the same order, so the same bits. */
void xcli_quantize_rows(const float *x, int64_t M, int64_t K, int8_t *q, float *scale) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; m++) {
    const float *row = x + m * K;
    __m512 top = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) {
      __mmask16 lanes = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
      top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(lanes, row + k)));
    }
    float largest = _mm512_reduce_max_ps(top);
    float s = (largest > 1e-12f ? largest : 1e-12f) / 127.0f;
    __m512 sv = _mm512_set1_ps(s), low = _mm512_set1_ps(-127.0f), high = _mm512_set1_ps(127.0f);
    for (int64_t k = 0; k < K; k += 16) {
      __mmask16 lanes = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
      __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(lanes, row + k), sv);
      v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_min_ps(_mm512_max_ps(v, low), high);
      _mm_mask_storeu_epi8(q + m * K + k, lanes, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    scale[m] = s;
  }
}

/* The index of each row's largest value, as torch.argmax gives it: the first of equal largest
 * values, the first NaN where a row holds one (NaN counts as the largest). x (M, N) float32, N >= 1;
 * out (M,) int64. Each lane keeps its own largest value and, by a strict comparison, its first
 * index; the lanes are then reduced to the smallest index holding the largest value. */
static int64_t row_argmax(const float *row, int64_t N) {
  int64_t best_at = 0, k = 0;
  float best = row[0];
  __mmask16 nan = 0;
  if (N >= 16) {
    __m512 top = _mm512_loadu_ps(row);
    __m512i at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i step = _mm512_set1_epi32(16), here = at;
    nan = _mm512_cmp_ps_mask(top, top, _CMP_UNORD_Q);
    for (k = 16; k + 16 <= N; k += 16) {
      __m512 v = _mm512_loadu_ps(row + k);
      here = _mm512_add_epi32(here, step);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      __mmask16 greater = _mm512_cmp_ps_mask(v, top, _CMP_GT_OQ);
      top = _mm512_mask_mov_ps(top, greater, v);
      at = _mm512_mask_mov_epi32(at, greater, here);
    }
    float tops[16];
    int32_t ats[16];
    _mm512_storeu_ps(tops, top);
    _mm512_storeu_si512(ats, at);
    best = tops[0];
    best_at = ats[0];
    for (int lane = 1; lane < 16; lane++)
      if (tops[lane] > best || (tops[lane] == best && ats[lane] < best_at)) {
        best = tops[lane];
        best_at = ats[lane];
      }
  } else {
    k = 1;
  }
  for (; k < N; k++) { /* the rest, after every index above: a strict comparison keeps the first */
    if (row[k] != row[k]) nan = 1;
    if (row[k] > best) {
      best = row[k];
      best_at = k;
    }
  }
  if (nan || best != best)
    for (k = 0; k < N; k++)
      if (row[k] != row[k]) return k;
  return best_at;
}

void xcli_argmax_rows(const float *x, int64_t M, int64_t N, int64_t *out) {
#pragma omp parallel for schedule(static) if (M > 1)
  for (int64_t m = 0; m < M; m++) out[m] = row_argmax(x + m * N, N);
}
