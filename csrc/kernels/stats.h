// Per-image gradient scale s_b (rms, mean |g|, population std, max |g|) and non-finite flag,
// reduced in float32 on the device in two fixed stages so that a plain loop over the thread
// indices reproduces the GPU's result exactly:
//   A. StatsPartialBody, B * T threads: thread t of image b folds elements t, t + T, t + 2T, ...
//      of its image, in that order, into partials[b, t];
//   B. StatsCombineBody, one thread per image: folds its T partials in order of t.
// T depends on the image size only, so an image's scale does not depend on its batch.
#pragma once

#include "image_shape.h"
#include "storage.h"

namespace pvf {

// Threads per image in stage A: a power of two, <= 1024, with up to 256 elements each while
// that allows it.
inline int64_t stats_threads_per_image(int64_t image_numel) {
  int64_t threads = 1;
  while (threads < 1024 && threads * 256 < image_numel) threads *= 2;
  return threads;
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

// Stage B: denom[b] = s_b + eps; nonfinite[b] = a non-finite element or a non-finite s_b.
struct StatsCombineBody {
  const StatsPartial* partials;
  float* denom;  // [B]
  bool* nonfinite;  // [B]
  int64_t threads_per_image;
  NormMode mode;
  float eps;

  PVF_HD void operator()(int64_t b) const {
    StatsPartial p{0.0f, 0.0f, 0, 0};
    for (int64_t t = 0; t < threads_per_image; ++t) p = fold_partial(p, partials[b * threads_per_image + t], mode);
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
