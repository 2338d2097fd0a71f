#include "mote/ops/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace mote {
namespace {

double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// The rotation index whose wavelength fits `rotations` times into the
// original context.
double correction_dim(double rotations, int dim, double base, int max_pos) {
  return dim * std::log(max_pos / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

Rope::Rope(const RopeParams& c) : dim_(c.dim), neox_(c.neox), inv_freq_(static_cast<size_t>(dim_ / 2)) {
  // Reference implementations compute the frequencies in fp32.
  const auto base = static_cast<float>(c.theta);
  for (int i = 0; i < dim_ / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim_);
    inv_freq_[i] = 1.0f / std::pow(base, exponent);
  }
  if (!c.yarn) return;
  const YarnScaling& y = *c.yarn;
  double low = correction_dim(y.beta_fast, dim_, c.theta, y.original_max_position_embeddings);
  double high = correction_dim(y.beta_slow, dim_, c.theta, y.original_max_position_embeddings);
  if (y.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim_ - 1));
  if (low == high) high += 0.001;
  for (int i = 0; i < dim_ / 2; ++i) {
    const float ramp = static_cast<float>(std::clamp((i - low) / (high - low), 0.0, 1.0));
    const float extrapolation_weight = 1.0f - ramp;
    const float interpolated = inv_freq_[i] / static_cast<float>(y.factor);
    inv_freq_[i] = interpolated * (1.0f - extrapolation_weight) + inv_freq_[i] * extrapolation_weight;
  }
  magnitude_ = static_cast<float>(yarn_mscale(y.factor, y.mscale) / yarn_mscale(y.factor, y.mscale_all_dim));
}

void Rope::angles(int pos, float* cos_out, float* sin_out) const {
  for (int i = 0; i < dim_ / 2; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq_[i];
    cos_out[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * magnitude_;
    sin_out[i] = static_cast<float>(std::sin(static_cast<double>(angle))) * magnitude_;
  }
}

void Rope::apply(float* x, const float* cos_v, const float* sin_v) const {
  const int half = dim_ / 2;
  if (neox_) {
    for (int i = 0; i < half; ++i) {
      const float a = x[i];
      const float b = x[i + half];
      x[i] = a * cos_v[i] - b * sin_v[i];
      x[i + half] = b * cos_v[i] + a * sin_v[i];
    }
    return;
  }
  for (int i = 0; i < half; ++i) {
    const float a = x[2 * i];
    const float b = x[2 * i + 1];
    x[2 * i] = a * cos_v[i] - b * sin_v[i];
    x[2 * i + 1] = a * sin_v[i] + b * cos_v[i];
  }
}

}  // namespace mote
