// Training-mode BatchNorm as XLA FFI handlers: statistics and gradients
// here, normalisation by oneDNN.
//
//   OnednnBnForward  (x, scale, shift)                 -> y, mean, var, k, s1
//   OnednnBnBackward (x, dy, k, s1, var, scale, dmean, dvar)
//                                                      -> dx, dscale, dshift
//
// x, y, dy, dx: channels last, any rank >= 2, read as [M, C] (M = all the
// other axes), float32 or bfloat16, one dtype; everything else float32 [C].
// var is biased; mean = k + s1 (below); dmean, dvar are the cotangents of
// the returned mean and variance (zeros when unused).
//
// Statistics. oneDNN 3.2's training primitive sums x in float32 for the
// mean, then (x - mean)^2 about that rounded mean
// (src/cpu/x64/jit_uni_tbb_batch_normalization.cpp), so a channel with a
// large offset (1e4 + noise of 1e-2) gets a mean off by about a standard
// deviation and a variance off by 100%. Here one pass reads x once for both
// moments of shifted data d = x - k (k: x's first row, a value of the data;
// Chan, Golub & LeVeque 1983, eq. 1.7): s1 = E[d] = mean - k and
// var = E[d^2] - s1^2, each thread summing blocks of 32 rows in float32 and
// the block sums in double. oneDNN then normalises with these statistics
// given (use_global_stats, no reduction and no barrier): mean k and shift
// beta - gamma s1 / sqrt(var + eps), so y = gamma (x - k) / std + beta'
// never subtracts a rounded float32 mean (half an ulp of 1e4 is 5% of such
// a channel's deviation).
//
// Backward. Written here, not oneDNN's batch_normalization_backward, for
// two measured reasons (2-core AMD EPYC, shared): oneDNN's kernel
// (bnorm_jit) synchronises its threads with a spinning barrier, and on a
// busy machine each call then waited 4-8 ms for a descheduled thread
// (against 0.3-3 ms), where these two barrier-free passes (the sums of g
// and g (x - k - s1), then dx) took 0.5-4.3 ms single-threaded against
// its 0.3-2.9; and it centres on the float32 mean, off by 2^-24 |mean| /
// std in x_hat, where (x - k) - s1 is exact. dmean and dvar fold into
// dx's per-channel coefficients at no cost.
//
// oneDNN primitives are cached per (shape, dtype, eps, thread count) as in
// onednn_conv.cc, with a user scratchpad and a per-thread stream; every
// parallel region runs max(1, threads / concurrency) OpenMP threads (see
// ops/native/__init__.py).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace {

namespace ffi = xla::ffi;
using dnnl::memory;
using dt = dnnl::memory::data_type;
using flags = dnnl::normalization_flags;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

int DefaultThreads() {
  static const int threads = omp_get_max_threads();
  return threads;
}

dt ToDnnl(ffi::DataType t) {
  switch (t) {
    case ffi::DataType::F32:
      return dt::f32;
    case ffi::DataType::BF16:
      return dt::bf16;
    default:
      return dt::undef;
  }
}

// [M, C] channels last, as oneDNN's 2-D "nc" (N = M rows, no spatial axes;
// as fast as [N, C, 1, HW] nhwc in a pilot).
memory::desc Rows(int64_t m, int64_t c, dt type) {
  return memory::desc({m, c}, type, memory::format_tag::nc);
}

memory::desc Channels(int64_t c) {
  return memory::desc({c}, dt::f32, memory::format_tag::x);
}

struct Key {
  int64_t v[5];
  bool operator==(const Key& o) const {
    return std::memcmp(v, o.v, sizeof(v)) == 0;
  }
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ull;  // FNV-1a over the fields
    for (int64_t x : k.v) h = (h ^ static_cast<size_t>(x)) * 1099511628211ull;
    return h;
  }
};

struct Entry {
  dnnl::primitive prim;
  size_t scratch = 0;
};

// Normalisation with given statistics: y = scale (x - mean) / sqrt(var +
// eps) + shift.
std::shared_ptr<Entry> Build(int64_t m, int64_t c, dt type, float eps) {
  auto e = std::make_shared<Entry>();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto x = Rows(m, c, type);
  dnnl::batch_normalization_forward::primitive_desc pd(
      Engine(), dnnl::prop_kind::forward_inference, x, x, eps,
      flags::use_scale | flags::use_shift | flags::use_global_stats, attr);
  e->prim = dnnl::batch_normalization_forward(pd);
  e->scratch = pd.scratchpad_desc().get_size();
  return e;
}

std::shared_ptr<Entry> Lookup(int64_t m, int64_t c, dt type, float eps,
                              int threads) {
  int32_t eps_bits;
  std::memcpy(&eps_bits, &eps, sizeof(eps));
  const Key k{{m, c, static_cast<int64_t>(type), eps_bits, threads}};
  static std::mutex mu;
  static std::unordered_map<Key, std::shared_ptr<Entry>, KeyHash> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(k);
    if (it != cache.end()) return it->second;
  }
  auto e = Build(m, c, type, eps);  // a race builds twice
  std::lock_guard<std::mutex> lock(mu);
  return cache.emplace(k, e).first->second;
}

// A growing, 64-byte aligned buffer owned by one thread.
struct Buffer {
  void* p = nullptr;
  size_t n = 0;
  void* Get(size_t need) {
    if (need > n) {
      std::free(p);
      p = std::aligned_alloc(64, (need + 63) / 64 * 64);
      n = p ? need : 0;
    }
    return p;
  }
  ~Buffer() { std::free(p); }
};

thread_local Buffer tl_scratch, tl_sums, tl_channels, tl_totals;

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// ---- Sums over rows (statistics, gradients) and dx, vectorised. ----

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

inline float Widen(uint16_t v) {  // bfloat16 -> float32 (exact)
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

template <typename T>
inline float Load(const T* p, int64_t i);
template <>
inline float Load<float>(const float* p, int64_t i) {
  return p[i];
}
template <>
inline float Load<uint16_t>(const uint16_t* p, int64_t i) {
  return Widen(p[i]);
}

// Per-channel sums over `rows` rows of [rows, c]: with d = x - k - s1,
//   moments (g == nullptr): a1 = sum d,  a2 = sum d^2;
//   gradient:                a1 = sum g,  a2 = sum g d.
// Channels go in blocks of 16 whose sums stay in registers over the rows.
template <bool kGrad, typename T>
__attribute__((always_inline)) inline void Sums(
    const T* __restrict x, const T* __restrict g, int64_t rows, int64_t c,
    const float* __restrict k, const float* __restrict s1,
    float* __restrict a1, float* __restrict a2) {
  int64_t j0 = 0;
  for (; j0 + 16 <= c; j0 += 16) {
    float u1[16] = {}, u2[16] = {};
    for (int64_t i = 0; i < rows; ++i) {
#pragma omp simd
      for (int64_t j = 0; j < 16; ++j) {
        const int64_t at = i * c + j0 + j;
        const float d = (Load(x, at) - k[j0 + j]) - s1[j0 + j];
        const float w = kGrad ? Load(g, at) : d;
        u1[j] += w;
        u2[j] += w * d;
      }
    }
    for (int64_t j = 0; j < 16; ++j) {
      a1[j0 + j] = u1[j];
      a2[j0 + j] = u2[j];
    }
  }
  for (int64_t j = j0; j < c; ++j) a1[j] = a2[j] = 0.0f;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = j0; j < c; ++j) {
      const float d = (Load(x, i * c + j) - k[j]) - s1[j];
      const float w = kGrad ? Load(g, i * c + j) : d;
      a1[j] += w;
      a2[j] += w * d;
    }
}

CLONES void SumsF32(const float* x, const float* g, int64_t rows, int64_t c,
                    const float* k, const float* s1, float* a1, float* a2) {
  if (g)
    Sums<true>(x, g, rows, c, k, s1, a1, a2);
  else
    Sums<false>(x, g, rows, c, k, s1, a1, a2);
}

CLONES void SumsBf16(const uint16_t* x, const uint16_t* g, int64_t rows,
                     int64_t c, const float* k, const float* s1, float* a1,
                     float* a2) {
  if (g)
    Sums<true>(x, g, rows, c, k, s1, a1, a2);
  else
    Sums<false>(x, g, rows, c, k, s1, a1, a2);
}

constexpr int64_t kBlockRows = 32;  // float32 sums of at most 32 terms

int Teams(int threads, int64_t m) {
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(threads, m / kBlockRows)));
}

// The sums of `Sums` over all m rows, in double (u1, u2 [c]): each thread
// reads its share of the rows once, adding blocks of kBlockRows rows into
// double totals; the totals are added after the team joins (no barrier).
void Reduce(const void* x, const void* g, bool bf16, int64_t m, int64_t c,
            int threads, const float* k, const float* s1, double* u1,
            double* u2) {
  const int teams = Teams(threads, m);
  // Per team: two double totals, two float block sums, per channel.
  const size_t per_team = static_cast<size_t>(c) * 24;
  char* sums = static_cast<char*>(tl_sums.Get(per_team * teams + 64));
#pragma omp parallel num_threads(teams)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    double* t1 = reinterpret_cast<double*>(sums + per_team * t);
    double* t2 = t1 + c;
    float* a1 = reinterpret_cast<float*>(t2 + c);
    float* a2 = a1 + c;
    std::fill(t1, t1 + 2 * c, 0.0);
    const int64_t lo = m * t / n, hi = m * (t + 1) / n;
    for (int64_t i = lo; i < hi; i += kBlockRows) {
      const int64_t rows = std::min(kBlockRows, hi - i), at = i * c;
      if (bf16) {
        const auto* gb = static_cast<const uint16_t*>(g);
        SumsBf16(static_cast<const uint16_t*>(x) + at, gb ? gb + at : nullptr,
                 rows, c, k, s1, a1, a2);
      } else {
        const auto* gf = static_cast<const float*>(g);
        SumsF32(static_cast<const float*>(x) + at, gf ? gf + at : nullptr,
                rows, c, k, s1, a1, a2);
      }
      for (int64_t j = 0; j < c; ++j) {
        t1[j] += a1[j];
        t2[j] += a2[j];
      }
    }
  }
  for (int64_t j = 0; j < c; ++j) {
    u1[j] = u2[j] = 0.0;
    for (int t = 0; t < teams; ++t) {
      const double* t1 = reinterpret_cast<const double*>(sums + per_team * t);
      u1[j] += t1[j];
      u2[j] += t1[c + j];
    }
  }
}

// k (x's first row), s1 = mean - k, biased var.
void Moments(const void* x, bool bf16, int64_t m, int64_t c, int threads,
             float* k, float* s1, float* var) {
  for (int64_t j = 0; j < c; ++j) {
    k[j] = bf16 ? Widen(static_cast<const uint16_t*>(x)[j])
                : static_cast<const float*>(x)[j];
    s1[j] = 0.0f;  // Sums centres on k + s1
  }
  double* u = static_cast<double*>(tl_totals.Get(sizeof(double) * 2 * c));
  Reduce(x, nullptr, bf16, m, c, threads, k, s1, u, u + c);
  for (int64_t j = 0; j < c; ++j) {
    const double e1 = u[j] / m, e2 = u[c + j] / m;
    s1[j] = static_cast<float>(e1);
    var[j] = static_cast<float>(std::max(e2 - e1 * e1, 0.0));
  }
}

inline uint16_t Narrow(float f) {  // float32 -> bfloat16, nearest even
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : r);
}

inline void Store(float* p, int64_t i, float v) { p[i] = v; }
inline void Store(uint16_t* p, int64_t i, float v) { p[i] = Narrow(v); }

// dx = a g + b d + e per channel (d = x - k - s1), over `rows` rows.
template <typename T>
__attribute__((always_inline)) inline void Dx(
    const T* __restrict x, const T* __restrict g, int64_t rows, int64_t c,
    const float* __restrict k, const float* __restrict s1,
    const float* __restrict a, const float* __restrict b,
    const float* __restrict e, T* __restrict dx) {
  for (int64_t i = 0; i < rows; ++i) {
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const float d = (Load(x, i * c + j) - k[j]) - s1[j];
      Store(dx, i * c + j, a[j] * Load(g, i * c + j) + (b[j] * d + e[j]));
    }
  }
}

CLONES void DxF32(const float* x, const float* g, int64_t rows, int64_t c,
                  const float* k, const float* s1, const float* a,
                  const float* b, const float* e, float* dx) {
  Dx(x, g, rows, c, k, s1, a, b, e, dx);
}

CLONES void DxBf16(const uint16_t* x, const uint16_t* g, int64_t rows,
                   int64_t c, const float* k, const float* s1, const float* a,
                   const float* b, const float* e, uint16_t* dx) {
  Dx(x, g, rows, c, k, s1, a, b, e, dx);
}

// dx, dscale, dshift of y = scale (x - mean) / sqrt(var + eps) + shift, plus
// the cotangents dmean, dvar of the returned statistics (Ioffe & Szegedy
// 2015, Sec. 3): one parallel read of x and g for sum g and sum g x_hat,
// one more to write dx = scale / std (g - sum g / m - x_hat sum g x_hat / m)
// + (dmean + 2 dvar (x - mean)) / m.
void Gradients(const void* x, const void* g, void* dx, bool bf16, int64_t m,
               int64_t c, int threads, const float* k, const float* s1,
               const float* var, const float* scale, const float* dmean,
               const float* dvar, float eps, float* dscale, float* dshift) {
  double* u = static_cast<double*>(tl_totals.Get(sizeof(double) * 2 * c));
  Reduce(x, g, bf16, m, c, threads, k, s1, u, u + c);
  float* coef = static_cast<float*>(tl_channels.Get(sizeof(float) * 3 * c));
  float *a = coef, *b = coef + c, *e = coef + 2 * c;
  for (int64_t j = 0; j < c; ++j) {
    const double inv = 1.0 / std::sqrt(static_cast<double>(var[j]) + eps);
    const double sum_g = u[j], sum_gx = u[c + j] * inv;  // sum g x_hat
    const double gi = scale[j] * inv;
    dshift[j] = static_cast<float>(sum_g);
    dscale[j] = static_cast<float>(sum_gx);
    a[j] = static_cast<float>(gi);
    b[j] = static_cast<float>((2.0 * dvar[j] - gi * inv * sum_gx) / m);
    e[j] = static_cast<float>((dmean[j] - gi * sum_g) / m);
  }
  const int teams = Teams(threads, m);
#pragma omp parallel num_threads(teams)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t lo = m * t / n, hi = m * (t + 1) / n, at = lo * c;
    if (bf16)
      DxBf16(static_cast<const uint16_t*>(x) + at,
             static_cast<const uint16_t*>(g) + at, hi - lo, c, k, s1, a, b, e,
             static_cast<uint16_t*>(dx) + at);
    else
      DxF32(static_cast<const float*>(x) + at,
            static_cast<const float*>(g) + at, hi - lo, c, k, s1, a, b, e,
            static_cast<float*>(dx) + at);
  }
}

int Threads(int64_t concurrency) {
  const int threads =
      std::max<int>(1, DefaultThreads() / std::max<int64_t>(1, concurrency));
  if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
  return threads;
}

// Rows M and channels C of a channels-last array.
bool Shape(ffi::AnyBuffer a, int64_t* m, int64_t* c) {
  const auto d = a.dimensions();
  if (d.size() < 2) return false;
  *c = d[d.size() - 1];
  *m = 1;
  for (size_t i = 0; i + 1 < d.size(); ++i) *m *= d[i];
  return true;
}

memory Vec(int64_t c, const void* p) {
  return memory(Channels(c), Engine(), const_cast<void*>(p));
}

memory Scratch(size_t size) {
  return memory(memory::desc({static_cast<memory::dim>(size)}, dt::u8,
                             memory::format_tag::x),
                Engine(), tl_scratch.Get(size + 64));
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> scale,
                   ffi::Buffer<ffi::F32> shift, ffi::Result<ffi::AnyBuffer> y,
                   ffi::ResultBuffer<ffi::F32> mean,
                   ffi::ResultBuffer<ffi::F32> var,
                   ffi::ResultBuffer<ffi::F32> k,
                   ffi::ResultBuffer<ffi::F32> s1, float eps,
                   int64_t concurrency) {
  int64_t m, c;
  if (!Shape(x, &m, &c) || m == 0)
    return ffi::Error::InvalidArgument("onednn_bn: [M > 0, ..., C] expected");
  const dt x_type = ToDnnl(x.element_type());
  if (x_type == dt::undef || y->element_type() != x.element_type())
    return ffi::Error::InvalidArgument(
        "onednn_bn: x, y: float32 or bfloat16, one dtype");
  const int threads = Threads(concurrency);
  float* mu = mean->typed_data();
  float* v = var->typed_data();
  float* kk = k->typed_data();
  float* d1 = s1->typed_data();
  Moments(x.untyped_data(), x_type == dt::bf16, m, c, threads, kk, d1, v);
  // y = gamma * (x - k) / std + (beta - gamma * s1 / std).
  float* beta = static_cast<float*>(tl_channels.Get(sizeof(float) * c));
  const float* g = scale.typed_data();
  const float* b = shift.typed_data();
  for (int64_t j = 0; j < c; ++j) {
    const float inv = 1.0f / std::sqrt(v[j] + eps);
    beta[j] = b[j] - g[j] * (d1[j] * inv);
    mu[j] = kk[j] + d1[j];
  }
  try {
    auto e = Lookup(m, c, x_type, eps, threads);
    memory xm(Rows(m, c, x_type), Engine(), x.untyped_data());
    memory ym(Rows(m, c, x_type), Engine(), y->untyped_data());
    auto& s = Stream();
    e->prim.execute(s, {{DNNL_ARG_SRC, xm},
                        {DNNL_ARG_DST, ym},
                        {DNNL_ARG_MEAN, Vec(c, kk)},
                        {DNNL_ARG_VARIANCE, Vec(c, v)},
                        {DNNL_ARG_SCALE, Vec(c, g)},
                        {DNNL_ARG_SHIFT, Vec(c, beta)},
                        {DNNL_ARG_SCRATCHPAD, Scratch(e->scratch)}});
    s.wait();
  } catch (const std::exception& err) {
    return ffi::Error::Internal(std::string("onednn_bn: ") + err.what());
  }
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::AnyBuffer x, ffi::AnyBuffer dy,
                    ffi::Buffer<ffi::F32> k, ffi::Buffer<ffi::F32> s1,
                    ffi::Buffer<ffi::F32> var, ffi::Buffer<ffi::F32> scale,
                    ffi::Buffer<ffi::F32> dmean, ffi::Buffer<ffi::F32> dvar,
                    ffi::Result<ffi::AnyBuffer> dx,
                    ffi::ResultBuffer<ffi::F32> dscale,
                    ffi::ResultBuffer<ffi::F32> dshift, float eps,
                    int64_t concurrency) {
  int64_t m, c;
  if (!Shape(x, &m, &c) || m == 0)
    return ffi::Error::InvalidArgument("onednn_bn: [M > 0, ..., C] expected");
  const dt type = ToDnnl(x.element_type());
  if (type == dt::undef || dy.element_type() != x.element_type() ||
      dx->element_type() != x.element_type())
    return ffi::Error::InvalidArgument(
        "onednn_bn: x, dy, dx: float32 or bfloat16, one dtype");
  const int threads = Threads(concurrency);
  Gradients(x.untyped_data(), dy.untyped_data(), dx->untyped_data(),
            type == dt::bf16, m, c, threads, k.typed_data(), s1.typed_data(),
            var.typed_data(), scale.typed_data(), dmean.typed_data(),
            dvar.typed_data(), eps, dscale->typed_data(),
            dshift->typed_data());
  return ffi::Error::Success();
}

}  // namespace

#define EXPORT __attribute__((visibility("default")))

extern "C" EXPORT XLA_FFI_Error* OnednnBnForward(XLA_FFI_CallFrame* frame);
extern "C" EXPORT XLA_FFI_Error* OnednnBnBackward(XLA_FFI_CallFrame* frame);

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnBnForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("concurrency"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnBnBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("concurrency"));

// 1 if oneDNN builds the normalisation for x and y of `dtype` (0: float32,
// 1: bfloat16) on this CPU, else 0. (oneDNN 3.2 has no batch normalization
// whose y differs from x in dtype: the caller converts y.)
extern "C" EXPORT int OnednnBnSupports(int dtype) {
  const dt x = dtype == 1 ? dt::bf16 : dt::f32;
  try {
    Build(64, 16, x, 1e-5f);
  } catch (const dnnl::error&) {
    return 0;
  }
  return 1;
}
