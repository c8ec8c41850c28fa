// oneDNN 2-D convolution (NHWC activations, HWIO kernels) as XLA FFI handlers.
//
// Three handlers, the three passes of a convolution layer:
//   OnednnConvForward         (x, w)  -> y    y = conv(x, w)
//   OnednnConvBackwardData    (dy, w) -> dx   dx = d<y, dy>/dx
//   OnednnConvBackwardWeights (x, dy) -> dw   dw = d<y, dy>/dw
// x [N, H, W, C], w [KH, KW, C / G, O], y [N, OH, OW, O]; any strides,
// padding and dilation; G feature groups (G = C is depthwise); float32 or
// bfloat16 (all three buffers of a call share one dtype).
//
// Primitives are built once per (pass, geometry, dtype, thread count) and
// kept in a mutex-guarded cache; executing a primitive is thread-safe because
// each call passes its own scratchpad (oneDNN's user scratchpad mode) from a
// per-thread buffer, and uses a per-thread stream. The `concurrency`
// attribute is the number of devices that run this call at the same time
// (the shards of a batch-sharded call); each call then uses
// max(1, threads / concurrency) OpenMP threads, `threads` being OpenMP's
// default (OMP_NUM_THREADS, else the cores), so that several devices do not
// start more threads than cores. See ops/native/__init__.py.
#include <omp.h>

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

enum Pass : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow, groups;
  int64_t sh, sw, pt, pb, pl, pr, dh, dw;
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// OpenMP's default team size, read once before any call changes it.
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

struct Key {
  int64_t v[22];
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
  memory::desc user_w, prim_w;  // HWIO as given vs. the primitive's layout
  bool reorder_w = false;
  dnnl::reorder w_reorder;  // user->prim, or prim->user for kBackwardWeights
  size_t scratch = 0;
};

// Logical oneDNN weight dims (g)oihw over the HWIO buffer, by strides.
memory::desc UserWeights(const Geometry& g, dt type) {
  const int64_t ig = g.c / g.groups, og = g.o / g.groups;
  if (g.groups == 1)
    return memory::desc({g.o, ig, g.kh, g.kw}, type,
                        {1, g.o, g.kw * ig * g.o, ig * g.o});
  return memory::desc({g.groups, og, ig, g.kh, g.kw}, type,
                      {og, 1, g.o, g.kw * ig * g.o, ig * g.o});
}

memory::dims WeightDims(const Geometry& g) {
  const int64_t ig = g.c / g.groups, og = g.o / g.groups;
  if (g.groups == 1) return {g.o, ig, g.kh, g.kw};
  return {g.groups, og, ig, g.kh, g.kw};
}

memory::desc Activations(int64_t n, int64_t h, int64_t w, int64_t c,
                         dt type) {
  return memory::desc({n, c, h, w}, type, memory::format_tag::nhwc);
}

std::shared_ptr<Entry> Build(Pass pass, const Geometry& g, dt type) {
  auto e = std::make_shared<Entry>();
  const auto src = Activations(g.n, g.h, g.w, g.c, type);
  const auto dst = Activations(g.n, g.oh, g.ow, g.o, type);
  const memory::desc w_any(WeightDims(g), type, memory::format_tag::any);
  const memory::dims strides = {g.sh, g.sw}, dil = {g.dh - 1, g.dw - 1};
  const memory::dims pad_l = {g.pt, g.pl}, pad_r = {g.pb, g.pr};
  const auto algo = dnnl::algorithm::convolution_direct;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  e->user_w = UserWeights(g, type);
  // The forward descriptor is also the backward passes' hint.
  dnnl::convolution_forward::primitive_desc fwd(
      Engine(), dnnl::prop_kind::forward_training, algo, src, w_any, dst,
      strides, dil, pad_l, pad_r, attr);
  if (pass == kForward) {
    e->prim_w = fwd.weights_desc();
    e->prim = dnnl::convolution_forward(fwd);
    e->scratch = fwd.scratchpad_desc().get_size();
  } else if (pass == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), algo, src, w_any, dst, strides, dil, pad_l, pad_r, fwd,
        attr);
    e->prim_w = pd.weights_desc();
    e->prim = dnnl::convolution_backward_data(pd);
    e->scratch = pd.scratchpad_desc().get_size();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), algo, src, w_any, dst, strides, dil, pad_l, pad_r, fwd,
        attr);
    e->prim_w = pd.diff_weights_desc();
    e->prim = dnnl::convolution_backward_weights(pd);
    e->scratch = pd.scratchpad_desc().get_size();
  }
  e->reorder_w = !(e->prim_w == e->user_w);
  if (e->reorder_w) {
    const bool out = pass == kBackwardWeights;
    e->w_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
        Engine(), out ? e->prim_w : e->user_w, Engine(),
        out ? e->user_w : e->prim_w));
  }
  return e;
}

std::shared_ptr<Entry> Lookup(Pass pass, const Geometry& g, dt type,
                              int threads) {
  Key k;
  const int64_t v[22] = {pass, g.n,  g.h,  g.w,  g.c,  g.kh,
                         g.kw, g.o,  g.oh, g.ow, g.groups,
                         g.sh, g.sw, g.pt, g.pb, g.pl, g.pr,
                         g.dh, g.dw, static_cast<int64_t>(type), threads, 0};
  std::memcpy(k.v, v, sizeof(v));
  static std::mutex mu;
  static std::unordered_map<Key, std::shared_ptr<Entry>, KeyHash> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(k);
    if (it != cache.end()) return it->second;
  }
  auto e = Build(pass, g, type);  // outside the lock: a race builds twice
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

thread_local Buffer tl_scratch, tl_weights;

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// x, w, y are the forward pass's three tensors, whichever one is the output.
ffi::Error Run(Pass pass, ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer y,
               const int64_t* attrs, int64_t groups, int64_t concurrency) {
  const auto xd = x.dimensions(), wd = w.dimensions(), yd = y.dimensions();
  if (xd.size() != 4 || wd.size() != 4 || yd.size() != 4)
    return ffi::Error::InvalidArgument("onednn_conv: rank-4 buffers expected");
  const Geometry g{xd[0], xd[1], xd[2], xd[3], wd[0],    wd[1],
                   wd[3], yd[1], yd[2], groups, attrs[0], attrs[1],
                   attrs[2], attrs[3], attrs[4], attrs[5], attrs[6], attrs[7]};
  if (groups < 1 || g.c % groups || g.o % groups || wd[2] != g.c / groups ||
      yd[0] != g.n || yd[3] != g.o)
    return ffi::Error::InvalidArgument("onednn_conv: shapes do not match");
  const dt type = ToDnnl(x.element_type());
  if (type == dt::undef || w.element_type() != x.element_type() ||
      y.element_type() != x.element_type())
    return ffi::Error::InvalidArgument(
        "onednn_conv: float32 or bfloat16 buffers of one dtype expected");
  if (g.n == 0) return ffi::Error::Success();
  const int threads =
      std::max<int>(1, DefaultThreads() / std::max<int64_t>(1, concurrency));
  if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
  try {
    auto e = Lookup(pass, g, type, threads);
    memory xm(Activations(g.n, g.h, g.w, g.c, type), Engine(),
              x.untyped_data());
    memory ym(Activations(g.n, g.oh, g.ow, g.o, type), Engine(),
              y.untyped_data());
    memory wu(e->user_w, Engine(), w.untyped_data());
    memory wp = wu;
    if (e->reorder_w)
      wp = memory(e->prim_w, Engine(), tl_weights.Get(e->prim_w.get_size()));
    memory sp(memory::desc({static_cast<memory::dim>(e->scratch)}, dt::u8,
                           memory::format_tag::x),
              Engine(), tl_scratch.Get(e->scratch + 64));
    auto& s = Stream();
    if (pass == kForward) {
      if (e->reorder_w) e->w_reorder.execute(s, wu, wp);
      e->prim.execute(s, {{DNNL_ARG_SRC, xm},
                          {DNNL_ARG_WEIGHTS, wp},
                          {DNNL_ARG_DST, ym},
                          {DNNL_ARG_SCRATCHPAD, sp}});
    } else if (pass == kBackwardData) {
      if (e->reorder_w) e->w_reorder.execute(s, wu, wp);
      e->prim.execute(s, {{DNNL_ARG_DIFF_SRC, xm},
                          {DNNL_ARG_WEIGHTS, wp},
                          {DNNL_ARG_DIFF_DST, ym},
                          {DNNL_ARG_SCRATCHPAD, sp}});
    } else {
      e->prim.execute(s, {{DNNL_ARG_SRC, xm},
                          {DNNL_ARG_DIFF_WEIGHTS, wp},
                          {DNNL_ARG_DIFF_DST, ym},
                          {DNNL_ARG_SCRATCHPAD, sp}});
      if (e->reorder_w) e->w_reorder.execute(s, wp, wu);
    }
    s.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("onednn_conv: ") + err.what());
  } catch (const std::exception& err) {
    return ffi::Error::Internal(std::string("onednn_conv: ") + err.what());
  }
  return ffi::Error::Success();
}

#define CONV_ATTRS()                                                          \
  int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr,    \
      int64_t dil_h, int64_t dil_w, int64_t groups, int64_t concurrency

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer w,
                   ffi::Result<ffi::AnyBuffer> y, CONV_ATTRS()) {
  const int64_t a[8] = {sh, sw, pt, pb, pl, pr, dil_h, dil_w};
  return Run(kForward, x, w, *y, a, groups, concurrency);
}

ffi::Error BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer w,
                        ffi::Result<ffi::AnyBuffer> dx, CONV_ATTRS()) {
  const int64_t a[8] = {sh, sw, pt, pb, pl, pr, dil_h, dil_w};
  return Run(kBackwardData, *dx, w, dy, a, groups, concurrency);
}

ffi::Error BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy,
                           ffi::Result<ffi::AnyBuffer> dw, CONV_ATTRS()) {
  const int64_t a[8] = {sh, sw, pt, pb, pl, pr, dil_h, dil_w};
  return Run(kBackwardWeights, x, *dw, dy, a, groups, concurrency);
}

}  // namespace

#define BIND_ATTRS                                                           \
  .Attr<int64_t>("stride_h")                                                 \
      .Attr<int64_t>("stride_w")                                             \
      .Attr<int64_t>("pad_top")                                              \
      .Attr<int64_t>("pad_bottom")                                           \
      .Attr<int64_t>("pad_left")                                             \
      .Attr<int64_t>("pad_right")                                            \
      .Attr<int64_t>("dilation_h")                                           \
      .Attr<int64_t>("dilation_w")                                           \
      .Attr<int64_t>("groups")                                               \
      .Attr<int64_t>("concurrency")

#define BIND_TWO_IN_ONE_OUT                                                  \
  ffi::Ffi::Bind()                                                           \
      .Arg<ffi::AnyBuffer>()                                                 \
      .Arg<ffi::AnyBuffer>()                                                 \
      .Ret<ffi::AnyBuffer>() BIND_ATTRS

// Exported by name (the build may hide other symbols).
#define EXPORT __attribute__((visibility("default")))

extern "C" EXPORT XLA_FFI_Error* OnednnConvForward(XLA_FFI_CallFrame* frame);
extern "C" EXPORT XLA_FFI_Error* OnednnConvBackwardData(
    XLA_FFI_CallFrame* frame);
extern "C" EXPORT XLA_FFI_Error* OnednnConvBackwardWeights(
    XLA_FFI_CallFrame* frame);

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvForward, Forward, BIND_TWO_IN_ONE_OUT);
XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvBackwardData, BackwardData,
                              BIND_TWO_IN_ONE_OUT);
XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvBackwardWeights, BackwardWeights,
                              BIND_TWO_IN_ONE_OUT);

// 1 if oneDNN builds all three passes of a small 3x3 convolution in `dtype`
// (0: float32, 1: bfloat16) on this CPU, else 0. oneDNN 3.2 has no bfloat16
// convolution without AVX-512 (an AVX2-only CPU: "could not create a
// primitive descriptor"), so impl='auto' asks before it picks oneDNN.
extern "C" EXPORT int OnednnConvSupports(int dtype) {
  const dt type = dtype == 1 ? dt::bf16 : dt::f32;
  const Geometry g{2, 8, 8, 16, 3, 3, 16, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  try {
    for (Pass p : {kForward, kBackwardData, kBackwardWeights}) Build(p, g, type);
  } catch (const dnnl::error&) {
    return 0;
  }
  return 1;
}

// The oneDNN version the library runs with, for the backend status line.
extern "C" EXPORT const char* OnednnConvVersion() {
  static std::string text = [] {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch);
  }();
  return text.c_str();
}
