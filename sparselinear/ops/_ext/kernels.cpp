// CPU kernels of the sparse linear layer: plain C ABI, OpenMP over rows, SIMD over the batch.
//
// Gathered dense operands are "one contiguous batch vector per node", x (n_in, B), so every edge
// reads or updates one contiguous run of B values. Operands read or written once per row (the
// output y, the output gradient g of the fused backward) take strides, so that the caller can
// pass PyTorch's (batch, features) tensors without a transposed copy. The batch is processed in
// tiles of compile-time width (64, 32, 16, 8 values, then a remainder; see for_each_tile), so
// the accumulators of a row stay in registers while the row's edges stream past. The gradients
// of wide batches are computed over the transposed pattern.
//
//   spmm        y[r]  = sum_{k in row r} w[k] * x[col[k]]
//   backward    gw[k] = g[r] . x[col[k]]  and  gx[col[k]] += w[k] * g[r]   (one fused pass;
//               gx is one private (n_in, B) buffer per thread, summed by the caller; either
//               gradient may be skipped; optionally in column blocks, see block_layout)
//   backward_t  gx[c] = sum_{k in column c} w[perm[k]] * g[row_t[k]]  and
//               gw[perm[k]] = g[row_t[k]] . x[c]   (one pass over the transposed pattern)
#include <algorithm>
#include <cstdint>
#include <type_traits>

// Bumped whenever an exported signature changes; the Python bindings read it from this file and
// refuse a library that reports another (sl_abi_version).
#define SL_ABI_VERSION 6

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#else
inline int omp_get_thread_num() { return 0; }
#endif

// The tile ladder (for_each_tile) and the tile lambdas handed to it are inlined before the
// optimiser weighs the tile functions themselves, which it then sees as direct calls from the
// row function (as when the ladder was written out in each row function). The lambdas capture
// by value for the same reason: captures by reference change the inlining of the tiles.
#if defined(__GNUC__)
#define SL_INLINE inline __attribute__((always_inline))
#define SL_INLINE_LAMBDA __attribute__((always_inline))
#else
#define SL_INLINE inline
#define SL_INLINE_LAMBDA
#endif

namespace {

constexpr int64_t kPrefetch = 32;  // edges ahead whose batch vector is prefetched (measured)

// Prefetches the W values at p: every cache line of them.
template <typename T, int W, int RW = 0>
inline void prefetch_run(const T* p) {
  for (int l = 0; l < W * (int)sizeof(T); l += 64)
    __builtin_prefetch(reinterpret_cast<const char*>(p) + l, RW);
}

// Independent accumulator sets per row: enough to hide the FMA latency when a tile is narrow.
template <typename T, int W>
constexpr int unroll() {
  return W * (int)sizeof(T) <= 64 ? 4 : (W * (int)sizeof(T) <= 128 ? 2 : 1);
}

// One tile each of W, W / 2, ... down to 8 columns where it fits in [b, b1), advancing b.
template <int W, typename Tile>
SL_INLINE void halving_tiles(int64_t& b, int64_t b1, Tile& tile) {
  if constexpr (W >= 8) {
    if (b + W <= b1) {
      tile(std::integral_constant<int, W>{}, b);
      b += W;
    }
    halving_tiles<W / 2>(b, b1, tile);
  }
}

// The batch columns [b, b1) in tiles of compile-time width: as many of Widest as fit, then at
// most one each of the halving widths down to 8, calling tile(std::integral_constant<int, W>{},
// column) for each. Returns the first column not covered (fewer than 8 remain).
template <int Widest, typename Tile>
SL_INLINE int64_t for_each_tile(int64_t b, int64_t b1, Tile&& tile) {
  for (; b + Widest <= b1; b += Widest) tile(std::integral_constant<int, Widest>{}, b);
  halving_tiles<Widest / 2>(b, b1, tile);
  return b;
}

// Writes acc (+ bias) to y[b * ys], b < n.
template <typename T>
inline void store_row(const T* __restrict acc, T bias, T* __restrict y, int64_t ys, int64_t n) {
  if (ys == 1) {
#pragma omp simd
    for (int64_t b = 0; b < n; ++b) y[b] = acc[b] + bias;
  } else {
    for (int64_t b = 0; b < n; ++b) y[b * ys] = acc[b] + bias;
  }
}

template <typename T, typename I, int W>
inline void spmm_tile(const I* __restrict col, const T* __restrict w, const T* __restrict x,
                      T* __restrict y, int64_t ys, T bias, int64_t k0, int64_t k1, int64_t nnz,
                      int64_t B) {
  constexpr int U = unroll<T, W>();
  T acc[U][W];
  for (int u = 0; u < U; ++u)
    for (int b = 0; b < W; ++b) acc[u][b] = 0;
  int64_t k = k0;
  for (; k + U <= k1; k += U) {
    for (int u = 0; u < U; ++u) {
      if (k + u + kPrefetch < nnz) prefetch_run<T, W>(x + (int64_t)col[k + u + kPrefetch] * B);
      const T wk = w[k + u];
      const T* __restrict xr = x + (int64_t)col[k + u] * B;
#pragma omp simd
      for (int b = 0; b < W; ++b) acc[u][b] += wk * xr[b];
    }
  }
  for (; k < k1; ++k) {
    const T wk = w[k];
    const T* __restrict xr = x + (int64_t)col[k] * B;
#pragma omp simd
    for (int b = 0; b < W; ++b) acc[0][b] += wk * xr[b];
  }
  for (int u = 1; u < U; ++u)
    for (int b = 0; b < W; ++b) acc[0][b] += acc[u][b];
  store_row<T>(acc[0], bias, y, ys, W);
}

template <typename T, typename I>
inline void spmm_rest(const I* __restrict col, const T* __restrict w, const T* __restrict x,
                      T* __restrict y, int64_t ys, T bias, int64_t k0, int64_t k1, int64_t nnz,
                      int64_t B, int64_t nb) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // nb < 8
  for (int64_t k = k0; k < k1; ++k) {
    if (k + kPrefetch < nnz) __builtin_prefetch(x + (int64_t)col[k + kPrefetch] * B);
    const T wk = w[k];
    const T* __restrict xr = x + (int64_t)col[k] * B;
    for (int64_t b = 0; b < nb; ++b) acc[b] += wk * xr[b];
  }
  store_row<T>(acc, bias, y, ys, nb);
}

// The batch columns [b0, b1) of one output row; y[r * ys_r + b * ys_b], plus bias[r] if given.
template <typename T, typename I>
inline void spmm_row(const I* crow, const I* col, const T* w, const T* x, const T* bias, T* y,
                     int64_t ys_r, int64_t ys_b, int64_t r, int64_t b0, int64_t b1, int64_t nnz,
                     int64_t B) {
  const int64_t k0 = crow[r], k1 = crow[r + 1];
  const T br = bias ? bias[r] : T(0);
  T* yr = y + r * ys_r;
  auto tile = [=](auto width, int64_t bt) SL_INLINE_LAMBDA {
    spmm_tile<T, I, decltype(width)::value>(col, w, x + bt, yr + bt * ys_b, ys_b, br, k0, k1,
                                            nnz, B);
  };
  const int64_t b = for_each_tile<64>(b0, b1, tile);
  if (b < b1)
    spmm_rest<T, I>(col, w, x + b, yr + b * ys_b, ys_b, br, k0, k1, nnz, B, b1 - b);
}

// Sweeps of tb batch columns each, so that the part of x one sweep reads can stay in cache.
template <typename T, typename I>
void spmm(const I* crow, const I* col, const T* w, const T* x, const T* bias, T* y,
          int64_t ys_r, int64_t ys_b, int64_t n_rows, int64_t B, int64_t tb, int threads) {
  const int64_t nnz = n_rows > 0 ? (int64_t)crow[n_rows] : 0;
  if (tb <= 0) tb = B;
#pragma omp parallel num_threads(threads)
  for (int64_t b0 = 0; b0 < B; b0 += tb) {
    const int64_t b1 = b0 + tb < B ? b0 + tb : B;
#pragma omp for schedule(dynamic, 64)
    for (int64_t r = 0; r < n_rows; ++r)
      spmm_row<T, I>(crow, col, w, x, bias, y, ys_r, ys_b, r, b0, b1, nnz, B);
  }
}

// The row of x (and gx) that column c reads: counted from lo within a column window (Win).
template <bool Win>
inline int64_t window_column(int64_t c, int64_t lo) {
  if constexpr (Win) return c - lo;
  return c;
}

#if defined(__AVX2__) && defined(__FMA__)
// dst[j] = (first ? 0 : dst[j]) + the sum of the 8 lanes of p[j], for j < 8: the dot products of
// 8 edges reduced together (one horizontal-add tree instead of one per edge).
inline void store_dots8(const __m256* p, float* dst, bool first) {
  // Lane j of h0123 holds edge j's partial sums over elements 0-3 (low half) and 4-7.
  const __m256 h0123 = _mm256_hadd_ps(_mm256_hadd_ps(p[0], p[1]), _mm256_hadd_ps(p[2], p[3]));
  const __m256 h4567 = _mm256_hadd_ps(_mm256_hadd_ps(p[4], p[5]), _mm256_hadd_ps(p[6], p[7]));
  __m256 d = _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20),
                           _mm256_permute2f128_ps(h0123, h4567, 0x31));
  if (!first) d = _mm256_add_ps(d, _mm256_loadu_ps(dst));
  _mm256_storeu_ps(dst, d);
}

// The fused backward of a float batch tile of W (a multiple of 8) over edges [k0, k1) in groups
// of 8, whose 8 dot products are reduced together (one horizontal-add tree instead of one per
// edge). Returns the first edge not done (fewer than 8 remain).
template <typename I, int W, bool Win>
inline int64_t backward_tile_grouped(const I* __restrict col, const float* __restrict w,
                                     const float* __restrict x, const float* g,
                                     float* __restrict gw, float* __restrict gx, int64_t k0,
                                     int64_t k1, int64_t limit, int64_t B, int64_t lo,
                                     uint64_t width, bool first, bool want_gw, bool want_gx) {
  constexpr int C = W / 8;  // 8-float chunks per batch vector
  __m256 gv[C];
  for (int c = 0; c < C; ++c) gv[c] = _mm256_loadu_ps(g + 8 * c);
  int64_t k = k0;
  for (; k + 8 <= k1; k += 8) {
    __m256 p[8];
    for (int u = 0; u < 8; ++u) {
      if (k + u + kPrefetch < limit) {
        const int64_t next = window_column<Win>(col[k + u + kPrefetch], lo);
        if (!Win || (uint64_t)next < width) {  // an edge ahead (inside the window)
          prefetch_run<float, W>(x + next * B);
          if (want_gx) prefetch_run<float, W, 1>(gx + next * B);
        }
      }
      const int64_t e = window_column<Win>(col[k + u], lo) * B;
      if (want_gw) {
        p[u] = _mm256_mul_ps(gv[0], _mm256_loadu_ps(x + e));
        for (int c = 1; c < C; ++c)
          p[u] = _mm256_fmadd_ps(gv[c], _mm256_loadu_ps(x + e + 8 * c), p[u]);
      }
      if (want_gx) {
        const __m256 wk = _mm256_set1_ps(w[k + u]);
        float* o = gx + e;
        for (int c = 0; c < C; ++c)
          _mm256_storeu_ps(o + 8 * c, _mm256_fmadd_ps(wk, gv[c], _mm256_loadu_ps(o + 8 * c)));
      }
    }
    if (want_gw) store_dots8(p, gw + k, first);
  }
  return k;
}
#endif

// One row of the fused backward on a batch tile of width W (W == 0: runtime width nb).
template <typename T, typename I, int W, bool Win>
inline void backward_tile(const I* __restrict col, const T* __restrict w, const T* __restrict x,
                          const T* __restrict gr, int64_t gs, T* __restrict gw,
                          T* __restrict gx, int64_t k0, int64_t k1, int64_t nnz, int64_t B,
                          int64_t lo, uint64_t width, bool first, bool want_gw,
                          bool want_gx) {
  T g[W];
  if (gs == 1) {
    for (int b = 0; b < W; ++b) g[b] = gr[b];
  } else {
    for (int b = 0; b < W; ++b) g[b] = gr[b * gs];
  }
  int64_t k = k0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float> && (W == 16 || W == 32))
    k = backward_tile_grouped<I, W, Win>(col, w, x, g, gw, gx, k0, k1, nnz, B, lo, width,
                                         first, want_gw, want_gx);
#endif
  for (; k < k1; ++k) {
    if (k + kPrefetch < nnz) {
      const int64_t next = window_column<Win>(col[k + kPrefetch], lo);
      if (!Win || (uint64_t)next < width) {
        prefetch_run<T, W>(x + next * B);
        if (want_gx) prefetch_run<T, W, 1>(gx + next * B);
      }
    }
    const int64_t c = window_column<Win>(col[k], lo) * B;
    if (want_gw) {
      const T* __restrict xr = x + c;
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int b = 0; b < W; ++b) dot += g[b] * xr[b];
      gw[k] = first ? dot : gw[k] + dot;
    }
    if (want_gx) {
      const T wk = w[k];
      T* __restrict out = gx + c;
#pragma omp simd
      for (int b = 0; b < W; ++b) out[b] += wk * g[b];
    }
  }
}

template <typename T, typename I, bool Win>
inline void backward_rest(const I* __restrict col, const T* __restrict w, const T* __restrict x,
                          const T* __restrict g_in, int64_t gs, T* __restrict gw,
                          T* __restrict gx, int64_t k0, int64_t k1, int64_t nnz, int64_t B,
                          int64_t nb, int64_t lo, uint64_t width, bool first, bool want_gw,
                          bool want_gx) {
  T gr[8];  // nb < 8
  for (int64_t b = 0; b < nb; ++b) gr[b] = g_in[b * gs];
  for (int64_t k = k0; k < k1; ++k) {
    if (k + kPrefetch < nnz) {
      const int64_t next = window_column<Win>(col[k + kPrefetch], lo);
      if (!Win || (uint64_t)next < width) {
        __builtin_prefetch(x + next * B);
        if (want_gx) __builtin_prefetch(gx + next * B, 1);
      }
    }
    const int64_t c = window_column<Win>(col[k], lo) * B;
    if (want_gw) {
      T dot = 0;
      for (int64_t b = 0; b < nb; ++b) dot += gr[b] * x[c + b];
      gw[k] = first ? dot : gw[k] + dot;
    }
    if (want_gx) {
      const T wk = w[k];
      for (int64_t b = 0; b < nb; ++b) gx[c + b] += wk * gr[b];
    }
  }
}

// The batch columns [b0, b1) of one row of the fused backward; g[r * gs_r + b * gs_b]. The row's
// edges are col[crow[r]:crow[r + 1]], their values and weight gradients w and gw from s0 on:
// s0 = run[r] for a column block (see block_layout), else crow[r]. With a column window [lo, hi)
// (Win; col sorted within each row, no column blocks) only the row's edges with lo <= col < hi
// take part, and x and gx hold the window's columns from lo on.
template <typename T, typename I, bool Win>
inline void backward_row(const I* crow, const I* col, const I* run, const T* w, const T* x,
                         const T* g, int64_t gs_r, int64_t gs_b, T* gw, T* gx, int64_t r,
                         int64_t b0, int64_t b1, int64_t nnz, int64_t B, bool want_gw,
                         bool want_gx, bool accumulate, int64_t lo, int64_t hi) {
  int64_t k0 = crow[r], n = crow[r + 1] - k0, s0 = run ? (int64_t)run[r] : k0;
  if constexpr (Win) {  // the run of the row's edges inside the window (sorted in the row)
    const I* first = std::lower_bound(col + k0, col + k0 + n, (I)lo);
    const I* last = std::lower_bound(first, col + k0 + n, (I)hi);
    const int64_t skip = first - (col + k0);
    k0 += skip;
    s0 += skip;
    n = last - first;
  }
  const int64_t limit = nnz - k0;  // prefetches stay inside col (and the window's columns)
  const uint64_t columns = Win ? (uint64_t)(hi - lo) : 0;
  const I* c = col + k0;
  const T* wr = w + s0;
  T* gwr = gw ? gw + s0 : nullptr;
  const T* gr = g + r * gs_r;
  auto tile = [=](auto width, int64_t bt) SL_INLINE_LAMBDA {
    backward_tile<T, I, decltype(width)::value, Win>(c, wr, x + bt, gr + bt * gs_b, gs_b, gwr,
                                                     gx ? gx + bt : gx, 0, n, limit, B, lo,
                                                     columns, bt == 0 && !accumulate, want_gw,
                                                     want_gx);
  };
  const int64_t b = for_each_tile<32>(b0, b1, tile);
  if (b < b1 || B == 0)
    backward_rest<T, I, Win>(c, wr, x + b, gr + b * gs_b, gs_b, gwr, gx ? gx + b : gx, 0, n,
                             limit, B, b1 - b, lo, columns, b == 0 && !accumulate, want_gw,
                             want_gx);
}

// gx_private: (threads, n_cols, B) zeroed by the caller (or holding what to add to), or nullptr
// when want_gx is false. Sweeps of tb batch columns each, as in spmm; gw accumulates over the
// sweeps, and is added to from the first one on when accumulate is set. A column window [lo, hi)
// (hi >= 0; see backward_row) takes x and the private buffers over its n_cols = hi - lo columns
// and touches only the weight gradients of its edges.
// Column blocks (see block_layout), so that each block's slices of x and of the private buffers
// stay in cache: crow holds n_blocks row pointers of n_rows + 1 each, block after block, into
// col, and run (n_blocks x n_rows) the position of each block's run of each row in w and gw,
// which stay in the CSR order. One block: run == nullptr, w and gw in the order of col.
template <typename T, typename I>
void backward(const I* crow, const I* col, const I* run, const T* w, const T* x, const T* g,
              int64_t gs_r, int64_t gs_b, T* gw, T* gx_private, int64_t n_rows,
              int64_t n_blocks, int64_t n_cols, int64_t B, int64_t tb, int accumulate,
              int64_t lo, int64_t hi, int threads) {
  const int64_t nnz = n_rows > 0 ? (int64_t)crow[n_blocks * (n_rows + 1) - 1] : 0;
  const bool want_gw = gw != nullptr, want_gx = gx_private != nullptr;
  if (tb <= 0 || B == 0) tb = B > 0 ? B : 1;
  const int64_t sweeps_end = B > 0 ? B : 1;
#pragma omp parallel num_threads(threads)
  {
    T* gx = want_gx ? gx_private + (int64_t)omp_get_thread_num() * n_cols * B : nullptr;
    for (int64_t b0 = 0; b0 < sweeps_end; b0 += tb) {
      const int64_t b1 = b0 + tb < B ? b0 + tb : B;
      for (int64_t blk = 0; blk < n_blocks; ++blk) {
        const I* crow_b = crow + blk * (n_rows + 1);
        const I* run_b = run ? run + blk * n_rows : nullptr;
#pragma omp for schedule(dynamic, 64)
        for (int64_t r = 0; r < n_rows; ++r)
          if (hi >= 0)
            backward_row<T, I, true>(crow_b, col, run_b, w, x, g, gs_r, gs_b, gw, gx, r, b0,
                                     b1, nnz, B, want_gw, want_gx, accumulate != 0, lo, hi);
          else
            backward_row<T, I, false>(crow_b, col, run_b, w, x, g, gs_r, gs_b, gw, gx, r, b0,
                                      b1, nnz, B, want_gw, want_gx, accumulate != 0, lo, hi);
      }
    }
  }
}

#if defined(__AVX2__) && defined(__FMA__)
// backward_t_tile for a float tile of W (16 or 32) over edges [0, n) in groups of 8 whose dot
// products are reduced together; acc and xv are the tile's gx accumulator and x values. Returns
// the first edge not done (fewer than 8 remain).
template <typename I, int W>
inline int64_t backward_t_grouped(const I* __restrict row, const float* __restrict w,
                                  const float* __restrict g, float* __restrict acc,
                                  const float* __restrict xv, float* __restrict dots, int64_t n,
                                  int64_t limit, int64_t B, bool first_tile) {
  constexpr int C = W / 8;
  __m256 a[C], xr[C];
  for (int c = 0; c < C; ++c) {
    a[c] = _mm256_loadu_ps(acc + 8 * c);
    xr[c] = _mm256_loadu_ps(xv + 8 * c);
  }
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 p[8];
    for (int u = 0; u < 8; ++u) {
      if (k + u + kPrefetch < limit)
        prefetch_run<float, W>(g + (int64_t)row[k + u + kPrefetch] * B);
      const float* gr = g + (int64_t)row[k + u] * B;
      const __m256 wk = _mm256_set1_ps(w[k + u]);
      __m256 gv = _mm256_loadu_ps(gr);
      p[u] = _mm256_mul_ps(gv, xr[0]);
      a[0] = _mm256_fmadd_ps(wk, gv, a[0]);
      for (int c = 1; c < C; ++c) {
        gv = _mm256_loadu_ps(gr + 8 * c);
        p[u] = _mm256_fmadd_ps(gv, xr[c], p[u]);
        a[c] = _mm256_fmadd_ps(wk, gv, a[c]);
      }
    }
    store_dots8(p, dots + k, first_tile);
  }
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(acc + 8 * c, a[c]);
  return k;
}
#endif

// One batch tile of W values of one chunk of n edges of a column of the transposed pattern
// (row, w: the chunk's rows and values): gx[c] (+)= sum_k w[k] * g[row[k]] and
// dots[k] (+)= g[row[k]] . x[c]. Rows up to limit may be prefetched.
template <typename T, typename I, int W>
inline void backward_t_tile(const I* __restrict row, const T* __restrict w, const T* __restrict g,
                            const T* __restrict xc, T* __restrict gxc, int64_t gs,
                            T* __restrict dots, int64_t n, int64_t limit, int64_t B,
                            bool first_tile, bool first_chunk) {
  T acc[W], xv[W];
  for (int b = 0; b < W; ++b) {
    acc[b] = first_chunk ? T(0) : gxc[b * gs];
    xv[b] = xc[b];
  }
  int64_t k = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float> && (W == 16 || W == 32)) {
    k = backward_t_grouped<I, W>(row, w, g, acc, xv, dots, n, limit, B, first_tile);
  }
#endif
  for (; k < n; ++k) {
    if (k + kPrefetch < limit) prefetch_run<T, W>(g + (int64_t)row[k + kPrefetch] * B);
    const T* __restrict gr = g + (int64_t)row[k] * B;
    const T wk = w[k];
    T dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int b = 0; b < W; ++b) {
      acc[b] += wk * gr[b];
      dot += gr[b] * xv[b];
    }
    dots[k] = first_tile ? dot : dots[k] + dot;
  }
  for (int b = 0; b < W; ++b) gxc[b * gs] = acc[b];
}

template <typename T, typename I>
inline void backward_t_rest(const I* __restrict row, const T* __restrict w,
                            const T* __restrict g, const T* __restrict xc, T* __restrict gxc,
                            int64_t gs, T* __restrict dots, int64_t n, int64_t B, int64_t nb,
                            bool first_tile, bool first_chunk) {
  T acc[8], xv[8];  // nb < 8
  for (int64_t b = 0; b < nb; ++b) {
    acc[b] = first_chunk ? T(0) : gxc[b * gs];
    xv[b] = xc[b];
  }
  for (int64_t k = 0; k < n; ++k) {
    const T* __restrict gr = g + (int64_t)row[k] * B;
    const T wk = w[k];
    T dot = 0;
    for (int64_t b = 0; b < nb; ++b) {
      acc[b] += wk * gr[b];
      dot += gr[b] * xv[b];
    }
    dots[k] = first_tile ? dot : dots[k] + dot;
  }
  for (int64_t b = 0; b < nb; ++b) gxc[b * gs] = acc[b];
}

constexpr int64_t kChunk = 256;  // edges of one column whose dot products stay on the stack

// Both gradients in one sweep over the transposed pattern (crow_t, row_t; perm: the forward
// position of each of its edges): gx[c * gs_c + b * gs_b] and gw[perm[k]], reading rows of
// g (n_rows, B) at random, x (n_cols, B) once per column and w (forward order) through perm.
template <typename T, typename I>
void backward_t(const I* crow_t, const I* row_t, const I* perm, const T* w, const T* x,
                const T* g, T* gw, T* gx, int64_t gs_c, int64_t gs_b, int64_t n_cols, int64_t B,
                int threads) {
  const int64_t nnz = n_cols > 0 ? (int64_t)crow_t[n_cols] : 0;
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
  for (int64_t c = 0; c < n_cols; ++c) {
    T dots[kChunk], wc[kChunk];  // one chunk of the column's edges: dot products, values
    const T* xc = x + c * B;
    T* gxc = gx + c * gs_c;
    const int64_t k1 = crow_t[c + 1];
    int64_t k0 = crow_t[c];
    if (k0 == k1) {
      for (int64_t b = 0; b < B; ++b) gxc[b * gs_b] = 0;
      continue;
    }
    for (bool first_chunk = true; k0 < k1; k0 += kChunk, first_chunk = false) {
      const int64_t n = k0 + kChunk < k1 ? kChunk : k1 - k0;
      const I* row = row_t + k0;
      const int64_t limit = nnz - k0;  // prefetches stay inside row_t
      for (int64_t k = 0; k < n; ++k) wc[k] = w[perm[k0 + k]];
      auto tile = [=, &wc, &dots](auto width, int64_t bt) SL_INLINE_LAMBDA {
        backward_t_tile<T, I, decltype(width)::value>(row, wc, g + bt, xc + bt, gxc + bt * gs_b,
                                                      gs_b, dots, n, limit, B, bt == 0,
                                                      first_chunk);
      };
      const int64_t b = for_each_tile<32>(0, B, tile);
      if (b < B)
        backward_t_rest<T, I>(row, wc, g + b, xc + b, gxc + b * gs_b, gs_b, dots, n, B, B - b,
                              b == 0, first_chunk);
      if (B == 0)
        for (int64_t k = 0; k < n; ++k) dots[k] = 0;
      for (int64_t k = 0; k < n; ++k) gw[perm[k0 + k]] = dots[k];
    }
  }
}

// out[c * os_c + b * os_b] = sum over the threads' private (n_cols, B) buffers of [c, b].
template <typename T>
void reduce_private(const T* priv, int n_private, T* out, int64_t os_c, int64_t os_b,
                    int64_t n_cols, int64_t B, int threads) {
  const int64_t size = n_cols * B;
#pragma omp parallel for schedule(static, 256) num_threads(threads)
  for (int64_t c = 0; c < n_cols; ++c) {
    T acc[64];
    for (int64_t b0 = 0; b0 < B; b0 += 64) {
      const int64_t nb = B - b0 < 64 ? B - b0 : 64;
      const T* p = priv + c * B + b0;
#pragma omp simd
      for (int64_t b = 0; b < nb; ++b) acc[b] = p[b];
      for (int t = 1; t < n_private; ++t) {
#pragma omp simd
        for (int64_t b = 0; b < nb; ++b) acc[b] += p[t * size + b];
      }
      store_row<T>(acc, T(0), out + c * os_c + b0 * os_b, os_b, nb);
    }
  }
}

#if defined(__AVX2__) && defined(__FMA__)
// dst[c * ld + r] = src[r * ls + c] for r, c < 8, in registers.
inline void transpose8x8(const float* __restrict src, int64_t ls, float* __restrict dst,
                         int64_t ld) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ls);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
#endif

// dst[c * ld_dst + r] = src[r * ld_src + c] for r < R, c < C, in cache-sized square blocks
// (of 8 x 8 blocks transposed in registers, for float with AVX2).
template <typename T>
void transpose(const T* __restrict src, int64_t R, int64_t C, int64_t ld_src, T* __restrict dst,
               int64_t ld_dst, int threads) {
  constexpr int64_t kB = 32;
  const int64_t nr = (R + kB - 1) / kB, nc = (C + kB - 1) / kB;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < nr * nc; ++t) {
    const int64_t r0 = (t / nc) * kB, c0 = (t % nc) * kB;
    const int64_t r1 = r0 + kB < R ? r0 + kB : R, c1 = c0 + kB < C ? c0 + kB : C;
#if defined(__AVX2__) && defined(__FMA__)
    if constexpr (std::is_same_v<T, float>) {
      if (r1 - r0 == kB && c1 - c0 == kB) {
        for (int64_t c = c0; c < c1; c += 8)
          for (int64_t r = r0; r < r1; r += 8)
            transpose8x8(src + r * ld_src + c, ld_src, dst + c * ld_dst + r, ld_dst);
        continue;
      }
    }
#endif
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t r = r0; r < r1; ++r) dst[c * ld_dst + r] = src[r * ld_src + c];
  }
}

// Column blocks of a CSR pattern whose columns are sorted within each row: block b holds the
// edges of columns [bounds[b], bounds[b + 1]), and each row's edges of one block are one run of
// its CSR edges. Writes crow_blk, n_blocks row pointers of n_rows + 1 each into col_blk (block
// 0's edges row by row, then block 1's, ...), col_blk, and run, n_blocks x n_rows CSR positions
// of each block's run in each row (where its values and weight gradients are).
template <typename I>
void block_layout(const I* crow, const I* col, int64_t n_rows, const int64_t* bounds,
                  int64_t n_blocks, I* crow_blk, I* col_blk, I* run, int threads) {
  const int64_t stride = n_rows + 1;
#pragma omp parallel for schedule(static, 1024) num_threads(threads)
  for (int64_t r = 0; r < n_rows; ++r) {
    int64_t k = crow[r];
    const int64_t end = crow[r + 1];
    for (int64_t b = 0; b < n_blocks; ++b) {
      int64_t lo = k, hi = end;  // the first edge at or past the block's end column
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if ((int64_t)col[mid] < bounds[b + 1]) lo = mid + 1; else hi = mid;
      }
      run[b * n_rows + r] = (I)k;
      crow_blk[b * stride + r + 1] = (I)(lo - k);
      k = lo;
    }
  }
  int64_t base = 0;
  for (int64_t b = 0; b < n_blocks; ++b) {
    I* cb = crow_blk + b * stride;
    cb[0] = (I)base;
    for (int64_t r = 0; r < n_rows; ++r) cb[r + 1] += cb[r];
    base = cb[n_rows];
  }
#pragma omp parallel for schedule(static, 1024) num_threads(threads)
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const I* cb = crow_blk + b * stride;
      const int64_t k0 = cb[r], s = run[b * n_rows + r];
      for (int64_t j = 0; j < (int64_t)cb[r + 1] - k0; ++j) col_blk[k0 + j] = col[s + j];
    }
}

}  // namespace

#define SL_INSTANTIATE_LAYOUT(SUFFIX, I)                                                      \
  extern "C" void sl_block_layout_##SUFFIX(const I* crow, const I* col, int64_t n_rows,       \
                                           const int64_t* bounds, int64_t n_blocks,           \
                                           I* crow_blk, I* col_blk, I* run, int threads) {    \
    block_layout<I>(crow, col, n_rows, bounds, n_blocks, crow_blk, col_blk, run, threads);    \
  }

SL_INSTANTIATE_LAYOUT(i32, int32_t)
SL_INSTANTIATE_LAYOUT(i64, int64_t)

#define SL_INSTANTIATE(SUFFIX, T, I)                                                          \
  extern "C" void sl_spmm_##SUFFIX(const I* crow, const I* col, const T* w, const T* x,       \
                                   const T* bias, T* y, int64_t ys_r, int64_t ys_b,           \
                                   int64_t n_rows, int64_t B, int64_t tb, int threads) {      \
    spmm<T, I>(crow, col, w, x, bias, y, ys_r, ys_b, n_rows, B, tb, threads);                 \
  }                                                                                           \
  extern "C" void sl_backward_##SUFFIX(const I* crow, const I* col, const I* run,            \
                                       const T* w, const T* x, const T* g, int64_t gs_r,      \
                                       int64_t gs_b, T* gw, T* gx_private, int64_t n_rows,    \
                                       int64_t n_blocks, int64_t n_cols, int64_t B,           \
                                       int64_t tb, int accumulate, int64_t lo, int64_t hi,    \
                                       int threads) {                                         \
    backward<T, I>(crow, col, run, w, x, g, gs_r, gs_b, gw, gx_private, n_rows, n_blocks,     \
                   n_cols, B, tb, accumulate, lo, hi, threads);                               \
  }

#define SL_INSTANTIATE_T(SUFFIX, T, I)                                                        \
  extern "C" void sl_backward_t_##SUFFIX(const I* crow_t, const I* row_t, const I* perm,      \
                                         const T* w, const T* x, const T* g, T* gw, T* gx,    \
                                         int64_t gs_c, int64_t gs_b, int64_t n_cols,          \
                                         int64_t B, int threads) {                            \
    backward_t<T, I>(crow_t, row_t, perm, w, x, g, gw, gx, gs_c, gs_b, n_cols, B, threads);   \
  }

SL_INSTANTIATE_T(f32_i32, float, int32_t)
SL_INSTANTIATE_T(f32_i64, float, int64_t)
SL_INSTANTIATE_T(f64_i32, double, int32_t)
SL_INSTANTIATE_T(f64_i64, double, int64_t)

SL_INSTANTIATE(f32_i32, float, int32_t)
SL_INSTANTIATE(f32_i64, float, int64_t)
SL_INSTANTIATE(f64_i32, double, int32_t)
SL_INSTANTIATE(f64_i64, double, int64_t)

#define SL_INSTANTIATE_REDUCE(SUFFIX, T)                                                       \
  extern "C" void sl_reduce_private_##SUFFIX(const T* priv, int n_private, T* out,           \
                                             int64_t os_c, int64_t os_b, int64_t n_cols,      \
                                             int64_t B, int threads) {                        \
    reduce_private<T>(priv, n_private, out, os_c, os_b, n_cols, B, threads);                  \
  }

SL_INSTANTIATE_REDUCE(f32, float)
SL_INSTANTIATE_REDUCE(f64, double)

#define SL_INSTANTIATE_TRANSPOSE(SUFFIX, T)                                                    \
  extern "C" void sl_transpose_##SUFFIX(const T* src, int64_t R, int64_t C, int64_t ld_src,   \
                                        T* dst, int64_t ld_dst, int threads) {                \
    transpose<T>(src, R, C, ld_src, dst, ld_dst, threads);                                    \
  }

SL_INSTANTIATE_TRANSPOSE(f32, float)
SL_INSTANTIATE_TRANSPOSE(f64, double)

extern "C" int sl_abi_version() { return SL_ABI_VERSION; }

extern "C" int sl_has_openmp() {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}
