// Per-image gradient scale s_b (rms, mean |g|, population std, max |g|) and non-finite flag,
// reduced in float32 on the device by a fixed tree of thread-per-output stages, so that a plain
// loop over the thread indices reproduces the GPU's result exactly:
//   A. StatsPartialBody, B * T threads: thread t of image b folds elements t, t + T, t + 2T, ...
//      of its image, in that order, into partial [b, t] (about kStatsFold elements each);
//   F. StatsFoldBody, while more than kStatsFold partials per image are left: thread g of image
//      b folds partials g * kStatsFold ... (g + 1) * kStatsFold - 1, in order, into one;
//   C. StatsCombineBody, one thread per image: folds the last <= kStatsFold partials in order
//      and turns them into s_b + eps and the flag.
// Many short threads keep a GPU busy where one thread per image would wait on memory latency.
// T depends on the image size only, so an image's scale does not depend on its batch.
#pragma once

#include "image_shape.h"
#include "storage.h"

namespace pvf {

// Elements per stage-A thread and partials per fold thread.
constexpr int64_t kStatsFold = 32;

// Stage-A threads per image: the power of two that gives each about kStatsFold elements
// (at most 65536, so that huge images keep a small workspace).
inline int64_t stats_threads_per_image(int64_t image_numel) {
  int64_t threads = 1;
  while (threads < 65536 && threads * kStatsFold < image_numel) threads *= 2;
  return threads;
}

// Partials per image left after one fold stage.
inline int64_t stats_folded_count(int64_t count) { return (count + kStatsFold - 1) / kStatsFold; }

// Partials per image over all stages: the size of the partials workspace is B times this.
inline int64_t stats_partials_per_image(int64_t image_numel) {
  int64_t total = 0;
  for (int64_t count = stats_threads_per_image(image_numel);; count = stats_folded_count(count)) {
    total += count;
    if (count <= kStatsFold) return total;
  }
}

// One thread's fold. a, b per mode: rms (sum g^2, -), mean_abs (sum |g|, -), max_abs (max |g|, -),
// std (Welford mean, sum of squared deviations), none (-, -). count: elements folded.
struct StatsPartial {
  float a;
  float b;
  int32_t count;
  int32_t nonfinite;  // 1 if any folded element was NaN or +-inf
};

PVF_HD StatsPartial fold_element(StatsPartial p, float v, NormMode mode) {
  p.count += 1;
  if (!is_finite(v)) p.nonfinite = 1;
  switch (mode) {
    case kRms: p.a += v * v; break;
    case kMeanAbs: p.a += fabsf(v); break;
    case kMaxAbs: {
      const float m = fabsf(v);
      if (m > p.a || m != m) p.a = m;  // NaN wins, as in torch.amax
      break;
    }
    case kStd: {
      const float delta = v - p.a;
      p.a += delta / static_cast<float>(p.count);
      p.b += delta * (v - p.a);
      break;
    }
    case kNone: break;
  }
  return p;
}

// Folds partial q into p (Chan et al. for the std's mean and squared deviations).
PVF_HD StatsPartial fold_partial(StatsPartial p, const StatsPartial& q, NormMode mode) {
  if (q.count == 0) return p;
  const int32_t count = p.count + q.count;
  switch (mode) {
    case kRms:
    case kMeanAbs: p.a += q.a; break;
    case kMaxAbs:
      if (q.a > p.a || q.a != q.a) p.a = q.a;
      break;
    case kStd: {
      const float delta = q.a - p.a;
      const float share = static_cast<float>(q.count) / static_cast<float>(count);
      p.a += delta * share;
      p.b += q.b + delta * delta * static_cast<float>(p.count) * share;
      break;
    }
    case kNone: break;
  }
  p.count = count;
  p.nonfinite |= q.nonfinite;
  return p;
}

// The scale s_b of a fully folded image (0 for 'none').
PVF_HD float scale_of(const StatsPartial& p, NormMode mode) {
  const float n = static_cast<float>(p.count);
  switch (mode) {
    case kRms: return sqrtf(p.a / n);
    case kMeanAbs: return p.a / n;
    case kMaxAbs: return p.a;
    case kStd: return sqrtf(p.b / n);
    case kNone: return 0.0f;
  }
  return 0.0f;
}

// Stage A. Source: float operator()(int64_t b, int64_t e) giving the value of logical element e
// of image b (a load, or the blurred gradient computed on the fly).
template <class Source>
struct StatsPartialBody {
  Source value;
  StatsPartial* partials;  // [B, threads_per_image]
  ImageShape shape;
  int64_t threads_per_image;
  NormMode mode;

  PVF_HD void operator()(int64_t idx) const {
    const int64_t b = idx / threads_per_image;
    const int64_t first = b * shape.image();
    StatsPartial p{0.0f, 0.0f, 0, 0};
    for (int64_t e = idx - b * threads_per_image; e < shape.image(); e += threads_per_image) {
      p = fold_element(p, value(b, first + e), mode);
    }
    partials[idx] = p;
  }
};

// Folds partials [first, last) of one image's row, in order.
PVF_HD StatsPartial fold_range(const StatsPartial* row, int64_t first, int64_t last, NormMode mode) {
  StatsPartial p{0.0f, 0.0f, 0, 0};
  for (int64_t t = first; t < last; ++t) p = fold_partial(p, row[t], mode);
  return p;
}

// Stage F: out[b, g] = fold of in[b, g * kStatsFold ... (g + 1) * kStatsFold - 1].
struct StatsFoldBody {
  const StatsPartial* in;  // [B, in_count]
  StatsPartial* out;  // [B, out_count], out_count = stats_folded_count(in_count)
  int64_t in_count, out_count;
  NormMode mode;

  PVF_HD void operator()(int64_t idx) const {
    const int64_t b = idx / out_count;
    const int64_t first = (idx - b * out_count) * kStatsFold;
    const int64_t last = first + kStatsFold < in_count ? first + kStatsFold : in_count;
    out[idx] = fold_range(in + b * in_count, first, last, mode);
  }
};

// Stage C: denom[b] = s_b + eps; nonfinite[b] = a non-finite element or a non-finite s_b.
struct StatsCombineBody {
  const StatsPartial* partials;  // [B, count]
  float* denom;  // [B]
  bool* nonfinite;  // [B]
  int64_t count;
  NormMode mode;
  float eps;

  PVF_HD void operator()(int64_t b) const {
    const StatsPartial p = fold_range(partials + b * count, 0, count, mode);
    const float s = scale_of(p, mode);
    denom[b] = s + eps;
    nonfinite[b] = p.nonfinite != 0 || !is_finite(s);
  }
};

// Reads logical element e of a storage-type tensor as float (Source of the standalone normalize).
template <class T>
struct LoadSource {
  const T* data;
  Strides strides;
  ImageShape shape;

  PVF_HD float operator()(int64_t, int64_t e) const { return load(data, strides.offset(pixel_of(e, shape))); }
};

}  // namespace pvf
