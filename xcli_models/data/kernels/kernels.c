/* xcli's CPU kernels (xcli_models/native.py builds and loads this file; see its docstring), for
 * inference on x86-64 processors with AVX-512:
 *   xcli_int8_rows        a few rows of float32 inputs times int8 weights with a float32 scale per
 *                         output channel: the decode steps of int8 generation (below);
 *   xcli_f32_rows         a few rows times an (N, K) float32 weight: float32 decode steps;
 *   xcli_quantize_rows    float32 rows rounded to int8, for the int8 products of the task commands;
 *   xcli_argmax_rows      greedy decoding's choice;
 *   xcli_int8_rows_amx    xcli_int8_rows' product for many rows, by AMX's int8 tiles;
 *   xcli_decode_layers    a decode step through a stack of int8 layers in one call.
 *
 * The int8 product:  out[m, n] = scale[n] * sum_k x[m, k] * w[n, k]  (+ bias[n])
 *
 * Its weights come blocked (native.py's block_rows): BLOCK output channels at a time, 16 inputs of
 * each channel after another, so that a block is read as one forward stream, (N / BLOCK, K / 16,
 * BLOCK, 16) int8, N padded with zero channels to a multiple of BLOCK. Every weight is widened to
 * float32 and multiplied in float32: inputs are not rounded. Each output is summed in the same order
 * whatever the number of rows, so a row's numbers do not depend on the rows beside it. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#define BLOCK 8
/* bytes ahead of the block being read that are asked for early (2 KiB slower; 4-16 KiB alike within
 * the noise of a shared host's bandwidth, measured on XGLM-564M's projections) */
#define AHEAD 4096

/* The lanes of 16 that hold the next of `left` values (all 16, or the last ones of a row). */
static inline __mmask16 tail_lanes(int64_t left) {
  return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

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

/* GELU (the exact one, x Phi(x) = x (1 + erf(x / sqrt 2)) / 2) of 16 values, for an activation that
 * follows the product (act = 1 below). erf(t), t >= 0, is a polynomial of xcli's own fitting on each
 * of [0, 1] (odd, in t^2), [1, 2], [2, 3] and [3, 4] (least squares in double on Chebyshev points,
 * within 2e-9 of erf), 1 from 4 on (1 - erf(4) = 1.5e-8); evaluated in float32, so within a few
 * float32 roundings of torch's GELU. */
static inline __attribute__((always_inline)) __m512 horner(__m512 t, const float *c, int n) {
  __m512 r = _mm512_set1_ps(c[n - 1]);
  for (int i = n - 2; i >= 0; i--) r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(c[i]));
  return r;
}

static inline __attribute__((always_inline)) __m512 gelu16(__m512 x) {
  static const float near[7] = {1.1283791603887861f, -0.37612610395295254f, 0.11283460945141131f,
                                -0.026849555284662454f, 0.0051812510124214887f, -0.00079537566672538266f,
                                7.6807627718565127e-05f};
  static const float one[10] = {0.96610514639207623f, 0.11893028669464034f, -0.17839541647811252f,
                                0.13875220685801584f, -0.044599448331547061f, -0.014870843088965984f,
                                0.019333430022453572f, -0.0047011598936539762f, -0.0024019313354378389f,
                                0.001540404069400151f};
  static const float two[9] = {0.99959304811456717f, 0.0021783180256155178f, -0.0054457371227422322f,
                               0.0083482849942527228f, -0.0086215186196004559f, 0.0061433843015817257f,
                               -0.0028082129067349445f, 0.00040303484569724582f, 0.0003063140087800094f};
  static const float three[8] = {0.99999925802398593f, 5.3972939592274832e-06f, -1.9041049478259156e-05f,
                                 4.240918452549612e-05f, -6.4876919658421635e-05f, 8.0481250525086425e-05f,
                                 -9.5665591594363815e-05f, 6.68911751339892e-05f};
  __m512 t = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
  __m512 e = _mm512_mul_ps(t, horner(_mm512_mul_ps(t, t), near, 7));
  __mmask16 above1 = _mm512_cmp_ps_mask(t, _mm512_set1_ps(1.0f), _CMP_GE_OQ);
  __mmask16 above2 = _mm512_cmp_ps_mask(t, _mm512_set1_ps(2.0f), _CMP_GE_OQ);
  __mmask16 above3 = _mm512_cmp_ps_mask(t, _mm512_set1_ps(3.0f), _CMP_GE_OQ);
  __mmask16 above4 = _mm512_cmp_ps_mask(t, _mm512_set1_ps(4.0f), _CMP_GE_OQ);
  if (above1) {
    e = _mm512_mask_mov_ps(e, above1, horner(_mm512_sub_ps(t, _mm512_set1_ps(1.5f)), one, 10));
    e = _mm512_mask_mov_ps(e, above2, horner(_mm512_sub_ps(t, _mm512_set1_ps(2.5f)), two, 9));
    e = _mm512_mask_mov_ps(e, above3, horner(_mm512_sub_ps(t, _mm512_set1_ps(3.5f)), three, 8));
    e = _mm512_mask_mov_ps(e, above4, _mm512_set1_ps(1.0f));
  }
  /* erf is odd: the sign of x (a NaN stays NaN through the products) */
  e = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(e),
                                          _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u))));
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* GELU of out[0 .. count), in place (count <= 16). */
static inline __attribute__((always_inline)) void gelu_in_place(float *out, int64_t count) {
  __mmask16 lanes = tail_lanes(count);
  _mm512_mask_storeu_ps(out, lanes, gelu16(_mm512_maskz_loadu_ps(lanes, out)));
}

/* One row through two blocks at once, w0's and w1's, each summed as block_rows sums one row (the
 * same numbers): two forward streams from two places, which the processor fetches faster than one
 * (XGLM-564M's projections and LM head, 1 row, 2 threads: 3-5% less time, over three runs of 41
 * alternating passes). */
static inline __attribute__((always_inline)) void two_blocks(const float *x, int64_t K, const int8_t *w0,
                                                             const int8_t *w1, float out[2][BLOCK]) {
  __m512 acc[2][BLOCK];
  for (int j = 0; j < 2; j++)
    for (int r = 0; r < BLOCK; r++) acc[j][r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const int8_t *p = w0 + k * BLOCK, *q = w1 + k * BLOCK;
    _mm_prefetch((const char *)(p + AHEAD), _MM_HINT_T1);
    _mm_prefetch((const char *)(p + AHEAD + 64), _MM_HINT_T1);
    _mm_prefetch((const char *)(q + AHEAD), _MM_HINT_T1);
    _mm_prefetch((const char *)(q + AHEAD + 64), _MM_HINT_T1);
    __m512 xs = _mm512_loadu_ps(x + k);
    for (int r = 0; r < BLOCK; r++) {
      __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + r * 16))));
      __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + r * 16))));
      acc[0][r] = _mm512_fmadd_ps(w0, xs, acc[0][r]);
      acc[1][r] = _mm512_fmadd_ps(w1, xs, acc[1][r]);
    }
  }
  for (int j = 0; j < 2; j++)
    for (int r = 0; r < BLOCK; r++) out[j][r] = _mm512_reduce_add_ps(acc[j][r]);
}

/* A block's sums of one row into out (the row's outputs): scaled, the bias added, the activation. */
static inline __attribute__((always_inline)) void finish_block(float *out, const float *sums, int64_t first,
                                                               int64_t N, const float *scale, const float *bias,
                                                               int act) {
  int64_t count = N - first < BLOCK ? N - first : BLOCK;
  for (int64_t r = 0; r < count; r++) {
    float v = sums[r] * scale[first + r];
    out[first + r] = bias ? v + bias[first + r] : v;
  }
  if (act == 1) gelu_in_place(out + first, count);
}

/* x (M, K) float32, K a multiple of 16; w blocked as above for N channels; scale (N,); bias (N,) or
 * NULL; out (M, N) float32. One row goes through two blocks at a time (two_blocks), each thread's
 * share of the blocks read from its two halves. More rows go up to three at a time through a block,
 * its weights widened once for them (24 accumulators, the weight and three inputs fit the 32 vector
 * registers): 8 rows 15% faster than two at a time, 3 rows 25% (XGLM-564M's projections, 2 threads,
 * measured). */
void xcli_int8_rows(const float *x, int64_t M, const int8_t *w, const float *scale, const float *bias,
                    float *out, int64_t N, int64_t K, int act) {
  int64_t blocks = (N + BLOCK - 1) / BLOCK;
  if (M == 1) {
#pragma omp parallel
    {
      int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t lo = blocks * t / threads, hi = blocks * (t + 1) / threads, half = (hi - lo) / 2;
      for (int64_t i = 0; i < half; i++) {
        float sums[2][BLOCK];
        int64_t b0 = lo + i, b1 = lo + half + i;
        two_blocks(x, K, w + b0 * BLOCK * K, w + b1 * BLOCK * K, sums);
        finish_block(out, sums[0], b0 * BLOCK, N, scale, bias, act);
        finish_block(out, sums[1], b1 * BLOCK, N, scale, bias, act);
      }
      if ((hi - lo) % 2) {
        float sums[3][BLOCK];
        block_rows(x, K, w + (hi - 1) * BLOCK * K, 1, sums);
        finish_block(out, sums[0], (hi - 1) * BLOCK, N, scale, bias, act);
      }
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; b++) {
    const int8_t *wb = w + b * BLOCK * K;
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
      for (int j = 0; j < rows; j++) finish_block(out + (m + j) * N, sums[j], b * BLOCK, N, scale, bias, act);
    }
  }
}

/* ---- Float32 weights: a few rows times an (N, K) float32 weight, as nn.Linear stores it ----
 *
 * out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]): generation's decode products in float32 (a batch's
 * or beams' rows, up to F32_ROWS; kernels.py sends them here). Channels are taken a group at a time
 * (4 channels for up to 4 rows, 2 for up to 8, else 1: at most 16 accumulators), each channel's
 * inputs read once for all the rows, as one forward sweep over the group's rows of weights, the next
 * group's asked for early. Each output is summed in the same order whatever the number of rows
 * (16 lanes, then the lanes), so a row's numbers do not depend on the rows beside it. Measured by
 * benchmarks/int8_kernels.py (XGLM-564M's projections, 2-core Xeon with AMX, 2 threads): 8 rows
 * 58.9 ms against oneDNN's 84.8 and MKL's 106.0, 1 row 45.1 against MKL's 46.9. Past 16 rows
 * (native.py's F32_ROWS) oneDNN is the faster: 32 rows 120 ms against 81 on MVP-large's shapes
 * (two sweeps of the weights), 20 rows 79 against 49 on XLNet-base's (too many accumulators), by
 * hand. */
#define F32_GROUP_ROWS 16

static inline __attribute__((always_inline)) void channel_group(const float *x, int64_t K, const float *w, int C,
                                                                int rows, float sums[4][F32_GROUP_ROWS]) {
  __m512 acc[4][F32_GROUP_ROWS];
  for (int c = 0; c < C; c++)
    for (int j = 0; j < rows; j++) acc[c][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    __mmask16 lanes = tail_lanes(K - k);
    __m512 wv[4];
    for (int c = 0; c < C; c++) {
      _mm_prefetch((const char *)(w + (c + C) * K + k), _MM_HINT_T1); /* the next group's, a hint */
      wv[c] = _mm512_maskz_loadu_ps(lanes, w + c * K + k);
    }
    for (int j = 0; j < rows; j++) {
      __m512 xv = _mm512_maskz_loadu_ps(lanes, x + j * K + k);
      for (int c = 0; c < C; c++) acc[c][j] = _mm512_fmadd_ps(wv[c], xv, acc[c][j]);
    }
  }
  for (int c = 0; c < C; c++)
    for (int j = 0; j < rows; j++) sums[c][j] = _mm512_reduce_add_ps(acc[c][j]);
}

/* A last group of fewer channels, one channel at a time (rows and channels not known to the
 * compiler here: slower, and only at a weight's end). */
static __attribute__((noinline)) void group_tail(const float *x, int64_t K, const float *w, int C, int rows,
                                                 float sums[4][F32_GROUP_ROWS]) {
  for (int c = 0; c < C; c++) {
    float one[4][F32_GROUP_ROWS];
    channel_group(x, K, w + c * K, 1, rows, one);
    for (int j = 0; j < rows; j++) sums[c][j] = one[0][j];
  }
}

/* The group sizes xcli_f32_rows takes, unrolled for the compiler (rows and channels known at each
 * call): 4 channels for 1-4 rows, 2 for 5-8, 1 for 9-16. */
static void group_rows(const float *x, int64_t K, const float *w, int C, int rows, float sums[4][F32_GROUP_ROWS]) {
#define GROUP(c, r) \
  case r:           \
    channel_group(x, K, w, c, r, sums); \
    return;
  if (C == 4) {
    switch (rows) { GROUP(4, 1) GROUP(4, 2) GROUP(4, 3) GROUP(4, 4) }
  } else if (C == 2) {
    switch (rows) { GROUP(2, 5) GROUP(2, 6) GROUP(2, 7) GROUP(2, 8) }
  } else if (C == 1) {
    switch (rows) {
      GROUP(1, 9) GROUP(1, 10) GROUP(1, 11) GROUP(1, 12) GROUP(1, 13) GROUP(1, 14) GROUP(1, 15) GROUP(1, 16)
    }
  }
#undef GROUP
  group_tail(x, K, w, C, rows, sums);
}

/* x (M, K) float32, M <= F32_GROUP_ROWS; w (N, K) float32; bias (N,) or NULL; out (M, N); act as
 * xcli_int8_rows' (1: GELU). */
void xcli_f32_rows(const float *x, int64_t M, const float *w, const float *bias, float *out, int64_t N, int64_t K,
                   int act) {
  int C = M <= 4 ? 4 : M <= 8 ? 2 : 1;
  int64_t groups = (N + C - 1) / C;
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < groups; g++) {
    int64_t first = g * C;
    int channels = N - first < C ? (int)(N - first) : C;
    float sums[4][F32_GROUP_ROWS];
    group_rows(x, K, w + first * K, channels, (int)M, sums);
    for (int c = 0; c < channels; c++)
      for (int64_t j = 0; j < M; j++)
        out[j * N + first + c] = bias ? sums[c][j] + bias[first + c] : sums[c][j];
    if (act == 1)
      for (int64_t j = 0; j < M; j++) gelu_in_place(out + j * N + first, channels);
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
      __mmask16 lanes = tail_lanes(K - k);
      top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(lanes, row + k)));
    }
    float largest = _mm512_reduce_max_ps(top);
    float s = (largest > 1e-12f ? largest : 1e-12f) / 127.0f;
    __m512 sv = _mm512_set1_ps(s), low = _mm512_set1_ps(-127.0f), high = _mm512_set1_ps(127.0f);
    for (int64_t k = 0; k < K; k += 16) {
      __mmask16 lanes = tail_lanes(K - k);
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

/* ---- Many rows (a prompt, a batch, beams): AMX's int8 tiles, the inputs in three int8 parts ----
 *
 * From a few rows on, xcli_int8_rows is bound by the processor's float32 multiply-adds, not by
 * memory (16 rows through XGLM-564M's layers: about 95 G a second on two cores). AMX multiplies
 * int8 tiles at many times that rate, summing exactly in int32, and reads the weights as they are.
 * Each row of inputs is written in three int8 parts, x = s (q1 + q2 / 254 + q3 / 254^2) with s its
 * largest magnitude / 127 (q1 = x / s rounded, q2 = what it left out, times 254, rounded, q3 the
 * same again), which holds x to about 2^-24 of the row's largest magnitude; each part's products
 * are summed exactly, and the three sums are put together in double precision and scaled. So a
 * result is at least as exact as a float32 product's (whose sums round at every step), and a row's
 * numbers depend on that row alone; they are not bit for bit those of the rows kernel above.
 * Tiles (int32 C += int8 A x int8 B, 16 x 16 x 64): C (16 rows x 16 channels) per part, A (16 rows x
 * 64 inputs of a part), B (the weights of 16 channels, two blocks, put in AMX's quads once for all
 * the rows, in a buffer of the thread's). Built only by compilers that know AMX, and used only where
 * xcli_amx_ready says the processor has it and the operating system lets the process use it. */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#include <cpuid.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl")))
#define PARTS 3
#define PART_SCALE 254.0f
/* row chunks (of 16) taken through all the weights at a time: their parts, 3 x 64 rows x K bytes,
 * stay in the cache while every chunk of weights passes (the weights are read once a panel) */
#define PANEL 4

typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tile_config;

/* 1 where AMX's int8 tiles can be used by this process: the processor has them, and the kernel
 * grants the process their state (Linux's ARCH_REQ_XCOMP_PERM). */
int xcli_amx_ready(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return 0;
  return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
}

/* Each row of x (M, K) as its scale and three int8 parts, laid out as A tiles: part p, rows chunk
 * mc, inputs chunk kc (64 inputs), then 16 rows x 64 inputs; zeros past M rows and K inputs. */
AMX_TARGET static void split_rows(const float *x, int64_t M, int64_t K, int64_t chunks_m, int64_t chunks_k,
                                  int8_t *parts, float *row_scale) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < chunks_m * 16; row++) {
    int64_t mc = row / 16, m = row % 16;
    float inverse = 0.0f;
    if (row < M) {
      /* the largest magnitude, and a NaN or an infinity anywhere in the row (times 0: NaN), which
       * makes the row's scale NaN: its outputs NaN, as a float product's would not be finite */
      __m512 top = _mm512_setzero_ps(), poison = _mm512_setzero_ps(), zero = _mm512_setzero_ps();
      for (int64_t k = 0; k < K; k += 16) {
        __m512 v = _mm512_loadu_ps(x + row * K + k);
        top = _mm512_max_ps(top, _mm512_abs_ps(v));
        poison = _mm512_add_ps(poison, _mm512_mul_ps(v, zero));
      }
      float largest = _mm512_reduce_max_ps(top), s = (largest > 1e-30f ? largest : 1e-30f) / 127.0f;
      float bad = _mm512_reduce_add_ps(poison);
      row_scale[row] = bad == bad ? s : bad;
      inverse = bad == bad ? 1.0f / s : 0.0f;
    }
    __m512 times = _mm512_set1_ps(inverse), part_scale = _mm512_set1_ps(PART_SCALE);
    for (int64_t k = 0; k < chunks_k * 64; k += 16) {
      __m512 v = row < M && k < K ? _mm512_mul_ps(_mm512_loadu_ps(x + row * K + k), times) : _mm512_setzero_ps();
      for (int p = 0; p < PARTS; p++) {
        __m512 q = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        int8_t *tile = parts + ((p * chunks_m + mc) * chunks_k + k / 64) * 1024;
        _mm_storeu_si128((__m128i *)(tile + m * 64 + k % 64), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
        v = _mm512_mul_ps(_mm512_sub_ps(v, q), part_scale); /* what is left, in [-127, 127] */
      }
    }
  }
}

/* The weights of 16 channels (blocks b and b + 1; zeros for a block past the last) as B tiles, one
 * a chunk of 64 inputs: 16 quads of inputs x 16 channels x 4. A block's group (8 channels x 16
 * inputs) is 32 four-byte quads, which two permutes put in that order. */
AMX_TARGET static void weight_tiles(const int8_t *w, int64_t b, int64_t blocks, int64_t K, int64_t chunks_k,
                                    int8_t *tiles) {
  const __m512i first = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i second = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  memset(tiles + (K / 16) * 256, 0, (size_t)(chunks_k * 64 - K) * 16); /* inputs past K */
  for (int half = 0; half < 2; half++) {
    const int8_t *wb = w + (b + half) * BLOCK * K;
    for (int64_t g = 0; g < K / 16; g++) {
      __m512i quads0 = _mm512_setzero_si512(), quads1 = _mm512_setzero_si512();
      if (b + half < blocks) {
        _mm_prefetch((const char *)(wb + g * 128) + AHEAD, _MM_HINT_T1);
        _mm_prefetch((const char *)(wb + g * 128) + AHEAD + 64, _MM_HINT_T1);
        __m512i in0 = _mm512_loadu_si512(wb + g * 128), in1 = _mm512_loadu_si512(wb + g * 128 + 64);
        quads0 = _mm512_permutex2var_epi32(in0, first, in1);  /* quads 0 and 1 of the 8 channels */
        quads1 = _mm512_permutex2var_epi32(in0, second, in1); /* quads 2 and 3 */
      }
      int8_t *row = tiles + g * 256 + half * 32; /* g's 4 quad rows of 64 bytes; this half's 32 */
      _mm256_storeu_si256((__m256i *)(row + 0 * 64), _mm512_castsi512_si256(quads0));
      _mm256_storeu_si256((__m256i *)(row + 1 * 64), _mm512_extracti64x4_epi64(quads0, 1));
      _mm256_storeu_si256((__m256i *)(row + 2 * 64), _mm512_castsi512_si256(quads1));
      _mm256_storeu_si256((__m256i *)(row + 3 * 64), _mm512_extracti64x4_epi64(quads1, 1));
    }
  }
}

/* As xcli_int8_rows (the same arguments and layout); returns 0, or -1 where memory for its buffers
 * could not be had (nothing written then: the caller uses xcli_int8_rows). */
AMX_TARGET int xcli_int8_rows_amx(const float *x, int64_t M, const int8_t *w, const float *scale,
                                  const float *bias, float *out, int64_t N, int64_t K, int act) {
  int64_t chunks_k = (K + 63) / 64, chunks_m = (M + 15) / 16, blocks = (N + BLOCK - 1) / BLOCK;
  int64_t chunks_n = (blocks + 1) / 2;
  size_t part_bytes = (size_t)(PARTS * chunks_m * chunks_k) * 1024;
  int8_t *parts = aligned_alloc(64, part_bytes + (size_t)(chunks_m * 16) * sizeof(float));
  if (!parts) return -1;
  float *row_scale = (float *)(parts + part_bytes);
  split_rows(x, M, K, chunks_m, chunks_k, parts, row_scale);
  int failed = 0;
#pragma omp parallel
  {
    int8_t *tiles = aligned_alloc(64, (size_t)chunks_k * 1024);
    if (!tiles) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp barrier
    if (!failed) {
      tile_config config;
      memset(&config, 0, sizeof config);
      config.palette = 1;
      for (int t = 0; t < 7; t++) config.rows[t] = 16, config.colsb[t] = 64;
      _tile_loadconfig(&config);
      int32_t c[PARTS][16][16] __attribute__((aligned(64)));
      for (int64_t panel = 0; panel < chunks_m; panel += PANEL) /* rows whose parts stay in the cache */
#pragma omp for schedule(static)
      for (int64_t chunk = 0; chunk < chunks_n; chunk++) {
        weight_tiles(w, 2 * chunk, blocks, K, chunks_k, tiles);
        for (int64_t mc = panel; mc < chunks_m && mc < panel + PANEL; mc++) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          for (int64_t kc = 0; kc < chunks_k; kc++) {
            _tile_loadd(6, tiles + kc * 1024, 64);
            _tile_loadd(3, parts + ((0 * chunks_m + mc) * chunks_k + kc) * 1024, 64);
            _tile_loadd(4, parts + ((1 * chunks_m + mc) * chunks_k + kc) * 1024, 64);
            _tile_loadd(5, parts + ((2 * chunks_m + mc) * chunks_k + kc) * 1024, 64);
            _tile_dpbssd(0, 3, 6);
            _tile_dpbssd(1, 4, 6);
            _tile_dpbssd(2, 5, 6);
          }
          _tile_stored(0, c[0], 64);
          _tile_stored(1, c[1], 64);
          _tile_stored(2, c[2], 64);
          for (int m = 0; m < 16 && mc * 16 + m < M; m++) {
            double s = row_scale[mc * 16 + m];
            for (int n = 0; n < 16 && chunk * 16 + n < N; n++) {
              int64_t channel = chunk * 16 + n;
              double sum = (double)c[0][m][n] + ((double)c[1][m][n] + (double)c[2][m][n] / PART_SCALE) / PART_SCALE;
              float v = (float)(sum * s * (double)scale[channel]);
              out[(mc * 16 + m) * N + channel] = bias ? v + bias[channel] : v;
            }
            if (act == 1) gelu_in_place(out + (mc * 16 + m) * N + chunk * 16, N - chunk * 16);
          }
        }
      }
      _tile_release();
    }
    free(tiles);
  }
  free(parts);
  return failed ? -1 : 0;
}
#else
int xcli_amx_ready(void) { return 0; }
int xcli_int8_rows_amx(const float *x, int64_t M, const int8_t *w, const float *scale, const float *bias,
                       float *out, int64_t N, int64_t K, int act) {
  (void)x, (void)M, (void)w, (void)scale, (void)bias, (void)out, (void)N, (void)K, (void)act;
  return -1;
}
#endif

/* ---- A decode step of a stack of transformer layers in one call (layers/fused.py) ----
 *
 * B rows (one new token of each sequence) through n_layers layers, each
 *
 *   x = post_s(x + output(attend(pre_s(x))))          self-attention: queries, keys and values by
 *                                                       query, key and value, the new keys and values
 *                                                       written into the cache
 *   x = post_c(x + cross_output(attend_encoder(pre_c(x))))   (where the layer has cross-attention:
 *                                                       the cached keys and values of the encoder's)
 *   x = post_f(x + down(act(up(pre_f(x)))))
 *
 * every projection a product of the kernels above, int8 weight-only (xcli_int8_rows, or AMX's from
 * amx_from rows on; amx_from 0: never) or float32 (xcli_f32_rows), every norm a layer norm or none.
 * Between the products, the layer norms, the attention of one query per head and the residual sums
 * run here, not as a dozen torch operations a layer (about 4 ms of a 29 ms step of XGLM-564M int8,
 * each run cold after the weights stream). What each layer's table holds is layers/fused.py's to
 * write: */
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* pointers: the 6 norms' (weight, bias), each 0 for none; the 8 products' (blocked int8 weight,
 * scale, bias or 0) or (float32 weight, bias or 0, 0); the self-attention cache's key and value
 * buffers (B, heads, capacity, head_dim); the encoder's cached keys and values (B, heads, cross
 * steps, head_dim), 0 without cross-attention */
enum { P_NORMS = 0, P_PRODUCTS = 12, P_KEYS = 36, P_VALUES, P_CROSS_KEYS, P_CROSS_VALUES, P_COUNT };
enum { NORM_SELF_PRE = 0, NORM_SELF_POST, NORM_CROSS_PRE, NORM_CROSS_POST, NORM_FFN_PRE, NORM_FFN_POST };
enum { QUERY = 0, KEY, VALUE, OUTPUT, CROSS_QUERY, CROSS_OUTPUT, UP, DOWN };
/* numbers: heads, head_dim, the feed-forward width, the cache's capacity, the first cached step's row
 * in it, the steps cached before this one, the up product's activation (as the products take it),
 * which norms there are (bit NORM_... set: a layer norm, whose weight and bias may each be 0 for
 * none), which products are float32 (bit QUERY ... set), whether the layer attends to the encoder,
 * and the encoder's steps */
enum { I_HEADS = 0, I_HEAD_DIM, I_FFN, I_CAPACITY, I_START, I_CACHED, I_ACT, I_NORMS, I_FLOAT32, I_CROSS, I_CROSS_STEPS,
       I_COUNT };
/* floats: the 6 norms' eps, the self- and cross-attention score scales */
enum { F_EPS = 0, F_SCALE = 6, F_CROSS_SCALE, F_COUNT };

/* torch's layer norm of each row: (x - mean) / sqrt(var + eps) * weight + bias, mean and (biased)
 * variance summed in double; out may be x. */
static void layer_norm(const float *x, float *out, int64_t rows, int64_t D, const float *weight, const float *bias,
                       float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float *row = x + r * D;
    float *o = out + r * D;
    double sum = 0, squares = 0;
    for (int64_t k = 0; k < D; k++) sum += row[k];
    double mean = sum / (double)D;
    for (int64_t k = 0; k < D; k++) squares += (row[k] - mean) * (row[k] - mean);
    float m = (float)mean, inverse = (float)(1.0 / sqrt(squares / (double)D + eps));
    for (int64_t k = 0; k < D; k++) {
      float v = (row[k] - m) * inverse;
      if (weight) v *= weight[k];
      o[k] = bias ? v + bias[k] : v;
    }
  }
}

static inline float dot(const float *a, const float *b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; k += 16) {
    __mmask16 lanes = tail_lanes(n - k);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, a + k), _mm512_maskz_loadu_ps(lanes, b + k), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

/* A projection of x (M, K): float32 weights (p: weight, bias) or int8 (p: blocked, scale, bias). */
static void product(const float *x, int64_t M, const int64_t *p, int float32, float *out, int64_t N, int64_t K,
                    int act, int64_t amx_from) {
  if (float32) {
    xcli_f32_rows(x, M, (const float *)p[0], (const float *)p[1], out, N, K, act);
    return;
  }
  const int8_t *w = (const int8_t *)p[0];
  const float *scale = (const float *)p[1], *bias = (const float *)p[2];
  if (amx_from && M >= amx_from && xcli_int8_rows_amx(x, M, w, scale, bias, out, N, K, act) == 0) return;
  xcli_int8_rows(x, M, w, scale, bias, out, N, K, act);
}

/* One query a row and head over `steps` cached keys and values (B, H, capacity, Dh) from row start:
 * q, out (B, H * Dh); mask: (B, steps) additive, mask_stride 0 where one row serves all, or NULL;
 * scores: B * H * steps floats. As torch's scaled_dot_product_attention on the CPU: the softmax
 * exp(s - max) / sum, a NaN score gives NaN, and a row whose every score is -inf (every key blocked)
 * gives zeros. */
static void attend(const float *q, const float *keys, const float *values, int64_t B, int64_t H, int64_t Dh,
                   int64_t capacity, int64_t start, int64_t steps, float scale, const float *mask, int64_t mask_stride,
                   float *out, float *scores) {
  int64_t inner = H * Dh;
#pragma omp parallel for schedule(static) if (B * H * steps * Dh >= 65536)
  for (int64_t bh = 0; bh < B * H; bh++) {
    int64_t b = bh / H, h = bh % H;
    const float *query = q + b * inner + h * Dh, *kb = keys + (bh * capacity + start) * Dh;
    const float *vb = values + (bh * capacity + start) * Dh, *m = mask ? mask + b * mask_stride : NULL;
    float *s = scores + bh * steps, *o = out + b * inner + h * Dh, top = -INFINITY;
    int nan = 0;
    for (int64_t j = 0; j < steps; j++) {
      float v = dot(query, kb + j * Dh, Dh) * scale;
      if (m) v += m[j];
      s[j] = v;
      if (v > top) top = v;
      nan |= v != v;
    }
    if (top == -INFINITY && !nan) {
      memset(o, 0, Dh * sizeof(float));
      continue;
    }
    float total = 0;
    for (int64_t j = 0; j < steps; j++) total += s[j] = expf(s[j] - top);
    for (int64_t d = 0; d < Dh; d += 16) {
      __mmask16 lanes = tail_lanes(Dh - d);
      __m512 acc = _mm512_setzero_ps();
      for (int64_t j = 0; j < steps; j++)
        acc = _mm512_fmadd_ps(_mm512_set1_ps(s[j]), _mm512_maskz_loadu_ps(lanes, vb + j * Dh + d), acc);
      _mm512_mask_storeu_ps(o + d, lanes, _mm512_div_ps(acc, _mm512_set1_ps(total)));
    }
  }
}

static void add_rows(float *x, const float *update, int64_t count) {
  for (int64_t k = 0; k < count; k++) x[k] += update[k];
}

/* x (B, D) float32, in place. pointers, numbers, floats: n_layers entries of P_COUNT, I_COUNT and
 * F_COUNT (above); mask: the self-attention's (B, cached + 1) additive rows, cross_mask the
 * encoder's (B, cross steps), each with its row stride (0: one row for all) or NULL. Returns 0, or
 * -1 where there was no memory for the work rows (nothing written). */
int xcli_decode_layers(int64_t n_layers, const int64_t *pointers, const int64_t *numbers, const float *floats,
                       float *x, int64_t B, int64_t D, const float *mask, int64_t mask_stride, const float *cross_mask,
                       int64_t cross_mask_stride, int64_t amx_from) {
  int64_t inner = 0, ffn = 0, scores = 0;
  for (int64_t l = 0; l < n_layers; l++) {
    const int64_t *I = numbers + l * I_COUNT;
    int64_t width = I[I_HEADS] * I[I_HEAD_DIM], steps = I[I_CACHED] + 1;
    if (I[I_CROSS] && I[I_CROSS_STEPS] > steps) steps = I[I_CROSS_STEPS];
    if (width > inner) inner = width;
    if (I[I_FFN] > ffn) ffn = I[I_FFN];
    if (B * I[I_HEADS] * steps > scores) scores = B * I[I_HEADS] * steps;
  }
  size_t floats_needed = (size_t)(B * (2 * D + 4 * inner + ffn) + scores);
  float *work = malloc(floats_needed * sizeof(float));
  if (!work) return -1;
  float *normed = work, *update = normed + B * D, *q = update + B * D, *k = q + B * inner, *v = k + B * inner;
  float *attended = v + B * inner, *hidden = attended + B * inner, *s = hidden + B * ffn;
  for (int64_t l = 0; l < n_layers; l++) {
    const int64_t *P = pointers + l * P_COUNT, *I = numbers + l * I_COUNT, *norm = P + P_NORMS;
    const float *F = floats + l * F_COUNT;
    int64_t H = I[I_HEADS], Dh = I[I_HEAD_DIM], width = H * Dh, steps = I[I_CACHED] + 1;
#define HAS(which) ((I[I_NORMS] >> (which)) & 1)
#define NORM(which, from, to)                                                                              \
  layer_norm(from, to, B, D, (const float *)norm[2 * (which)], (const float *)norm[2 * (which) + 1], F[F_EPS + (which)])
#define PRE(which) (HAS(which) ? (NORM(which, x, normed), (const float *)normed) : (const float *)x)
#define PRODUCT(which, from, to, n, k, act) \
  product(from, B, P + P_PRODUCTS + 3 * (which), (int)((I[I_FLOAT32] >> (which)) & 1), to, n, k, act, amx_from)
    const float *in = PRE(NORM_SELF_PRE);
    PRODUCT(QUERY, in, q, width, D, 0);
    PRODUCT(KEY, in, k, width, D, 0);
    PRODUCT(VALUE, in, v, width, D, 0);
    float *keys = (float *)P[P_KEYS], *values = (float *)P[P_VALUES];
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++) {
        int64_t row = ((b * H + h) * I[I_CAPACITY] + I[I_START] + steps - 1) * Dh;
        memcpy(keys + row, k + b * width + h * Dh, Dh * sizeof(float));
        memcpy(values + row, v + b * width + h * Dh, Dh * sizeof(float));
      }
    attend(q, keys, values, B, H, Dh, I[I_CAPACITY], I[I_START], steps, F[F_SCALE], mask, mask_stride, attended, s);
    PRODUCT(OUTPUT, attended, update, D, width, 0);
    add_rows(x, update, B * D);
    if (HAS(NORM_SELF_POST)) NORM(NORM_SELF_POST, x, x);
    if (I[I_CROSS]) {
      in = PRE(NORM_CROSS_PRE);
      PRODUCT(CROSS_QUERY, in, q, width, D, 0);
      attend(q, (const float *)P[P_CROSS_KEYS], (const float *)P[P_CROSS_VALUES], B, H, Dh, I[I_CROSS_STEPS], 0,
             I[I_CROSS_STEPS], F[F_CROSS_SCALE], cross_mask, cross_mask_stride, attended, s);
      PRODUCT(CROSS_OUTPUT, attended, update, D, width, 0);
      add_rows(x, update, B * D);
      if (HAS(NORM_CROSS_POST)) NORM(NORM_CROSS_POST, x, x);
    }
    in = PRE(NORM_FFN_PRE);
    PRODUCT(UP, in, hidden, I[I_FFN], D, (int)I[I_ACT]);
    PRODUCT(DOWN, hidden, update, D, I[I_FFN], 0);
    add_rows(x, update, B * D);
    if (HAS(NORM_FFN_POST)) NORM(NORM_FFN_POST, x, x);
#undef HAS
#undef NORM
#undef PRE
#undef PRODUCT
  }
  free(work);
  return 0;
}
