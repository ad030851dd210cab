// Multi-scale deformable attention on CPU: one fused pass over the samples instead of a
// grid_sample per level, an intermediate (B*M, D, Q, L*P) tensor and a weighted sum.
// Same semantics as clock_distill.modeling.layers.ms_deform_attn.multi_scale_deformable_attention
// (bilinear, zero padding, align_corners=False); tests hold the two together.
//
// Work is split over (batch, head) pairs: each pair reads and writes only its own slice of
// value / grad_value, so the backward's scatter into grad_value needs no atomics.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace {

template <typename scalar_t>
struct Tap {
  int64_t offset[4];  // row offsets (in value rows) of the 4 corners, -1 when outside the map
  scalar_t w[4];      // bilinear weights of the corners
  scalar_t dwdx[4];   // d w / d ix
  scalar_t dwdy[4];   // d w / d iy
};

// loc in [0, 1] (x, y) -> the 4 bilinear taps. The pixel coordinate is computed with the very
// float expressions of the PyTorch path (grid = 2 * loc - 1, then grid_sample's unnormalize with
// align_corners=False), so both pick the same corners even next to a cell border.
template <typename scalar_t>
inline Tap<scalar_t> make_tap(scalar_t x, scalar_t y, int64_t h, int64_t w) {
  Tap<scalar_t> t;
  const scalar_t gx = 2 * x - 1, gy = 2 * y - 1;
  const scalar_t ix = ((gx + 1) * static_cast<scalar_t>(w) - 1) / 2;
  const scalar_t iy = ((gy + 1) * static_cast<scalar_t>(h) - 1) / 2;
  if (!(ix >= -1 && ix < w && iy >= -1 && iy < h)) {
    // No corner inside the map (or a NaN location): the sample reads zero and has no
    // gradient, and the floor below is never cast from an out-of-range float.
    for (int c = 0; c < 4; ++c) {
      t.offset[c] = -1;
      t.w[c] = t.dwdx[c] = t.dwdy[c] = 0;
    }
    return t;
  }
  const scalar_t x0f = std::floor(ix), y0f = std::floor(iy);
  const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
  const scalar_t fx = ix - x0f, fy = iy - y0f;
  const int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1};
  const int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1};
  const scalar_t wx[4] = {1 - fx, fx, 1 - fx, fx};
  const scalar_t wy[4] = {1 - fy, 1 - fy, fy, fy};
  const scalar_t sx[4] = {-1, 1, -1, 1};
  const scalar_t sy[4] = {-1, -1, 1, 1};
  for (int c = 0; c < 4; ++c) {
    const bool inside = xs[c] >= 0 && xs[c] < w && ys[c] >= 0 && ys[c] < h;
    t.offset[c] = inside ? ys[c] * w + xs[c] : -1;
    t.w[c] = wx[c] * wy[c];
    t.dwdx[c] = sx[c] * wy[c];
    t.dwdy[c] = wx[c] * sy[c];
  }
  return t;
}

void check_inputs(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& starts,
                  const at::Tensor& loc, const at::Tensor& attn) {
  TORCH_CHECK(value.device().is_cpu(), "ms_deform_attn_cpu: value must be on the CPU");
  TORCH_CHECK(value.dim() == 4, "value must be (B, N, M, D)");
  TORCH_CHECK(loc.dim() == 6 && loc.size(5) == 2, "sampling_locations must be (B, Q, M, L, P, 2)");
  TORCH_CHECK(attn.dim() == 5, "attention_weights must be (B, Q, M, L, P)");
  TORCH_CHECK(shapes.scalar_type() == at::kLong && starts.scalar_type() == at::kLong,
              "spatial shapes and level starts must be int64");
  TORCH_CHECK(loc.scalar_type() == value.scalar_type() && attn.scalar_type() == value.scalar_type(),
              "value, sampling_locations and attention_weights must share a dtype");
}

}  // namespace

// value (B, N, M, D), shapes (L, 2) int64 (H, W), starts (L,) int64, loc (B, Q, M, L, P, 2),
// attn (B, Q, M, L, P) -> (B, Q, M, D)
at::Tensor ms_deform_attn_forward(const at::Tensor& value_in, const at::Tensor& shapes_in,
                                  const at::Tensor& starts_in, const at::Tensor& loc_in,
                                  const at::Tensor& attn_in) {
  check_inputs(value_in, shapes_in, starts_in, loc_in, attn_in);
  const auto value = value_in.contiguous(), loc = loc_in.contiguous(), attn = attn_in.contiguous();
  const auto shapes = shapes_in.contiguous(), starts = starts_in.contiguous();
  const int64_t B = value.size(0), M = value.size(2), D = value.size(3);
  const int64_t Q = loc.size(1), L = loc.size(3), P = loc.size(4);
  auto out = at::zeros({B, Q, M, D}, value.options());
  const int64_t* hw = shapes.data_ptr<int64_t>();
  const int64_t* st = starts.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward", [&] {
    const scalar_t* v = value.data_ptr<scalar_t>();
    const scalar_t* lc = loc.data_ptr<scalar_t>();
    const scalar_t* aw = attn.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t N = value.size(1);
    at::parallel_for(0, B * M, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bm = begin; bm < end; ++bm) {
        const int64_t b = bm / M, m = bm % M;
        const scalar_t* vb = v + (b * N * M + m) * D;  // row n at vb + n * M * D
        for (int64_t q = 0; q < Q; ++q) {
          scalar_t* op = o + ((b * Q + q) * M + m) * D;
          const int64_t s = ((b * Q + q) * M + m) * L * P;  // sample index of (b, q, m, 0, 0)
          for (int64_t l = 0; l < L; ++l) {
            const int64_t h = hw[2 * l], w = hw[2 * l + 1];
            const scalar_t* vl = vb + st[l] * M * D;
            for (int64_t p = 0; p < P; ++p) {
              const int64_t k = s + l * P + p;
              const scalar_t a = aw[k];
              const Tap<scalar_t> t = make_tap<scalar_t>(lc[2 * k], lc[2 * k + 1], h, w);
              for (int c = 0; c < 4; ++c) {
                if (t.offset[c] < 0) continue;
                const scalar_t cw = a * t.w[c];
                const scalar_t* vp = vl + t.offset[c] * M * D;
                for (int64_t d = 0; d < D; ++d) op[d] += cw * vp[d];
              }
            }
          }
        }
      }
    });
  });
  return out;
}

// grad_out (B, Q, M, D) -> grad_value (B, N, M, D), grad_loc (B, Q, M, L, P, 2), grad_attn (B, Q, M, L, P)
std::vector<at::Tensor> ms_deform_attn_backward(const at::Tensor& value_in, const at::Tensor& shapes_in,
                                                const at::Tensor& starts_in, const at::Tensor& loc_in,
                                                const at::Tensor& attn_in, const at::Tensor& grad_out_in) {
  check_inputs(value_in, shapes_in, starts_in, loc_in, attn_in);
  const auto value = value_in.contiguous(), loc = loc_in.contiguous(), attn = attn_in.contiguous();
  const auto grad_out = grad_out_in.contiguous().to(value.scalar_type());
  const auto shapes = shapes_in.contiguous(), starts = starts_in.contiguous();
  const int64_t B = value.size(0), N = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Q = loc.size(1), L = loc.size(3), P = loc.size(4);
  auto grad_value = at::zeros_like(value);
  auto grad_loc = at::empty_like(loc);
  auto grad_attn = at::empty_like(attn);
  const int64_t* hw = shapes.data_ptr<int64_t>();
  const int64_t* st = starts.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward", [&] {
    const scalar_t* v = value.data_ptr<scalar_t>();
    const scalar_t* lc = loc.data_ptr<scalar_t>();
    const scalar_t* aw = attn.data_ptr<scalar_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    scalar_t* gv = grad_value.data_ptr<scalar_t>();
    scalar_t* gl = grad_loc.data_ptr<scalar_t>();
    scalar_t* ga = grad_attn.data_ptr<scalar_t>();
    at::parallel_for(0, B * M, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bm = begin; bm < end; ++bm) {
        const int64_t b = bm / M, m = bm % M;
        const scalar_t* vb = v + (b * N * M + m) * D;
        scalar_t* gvb = gv + (b * N * M + m) * D;
        for (int64_t q = 0; q < Q; ++q) {
          const scalar_t* g = go + ((b * Q + q) * M + m) * D;
          const int64_t s = ((b * Q + q) * M + m) * L * P;
          for (int64_t l = 0; l < L; ++l) {
            const int64_t h = hw[2 * l], w = hw[2 * l + 1];
            const scalar_t* vl = vb + st[l] * M * D;
            scalar_t* gvl = gvb + st[l] * M * D;
            for (int64_t p = 0; p < P; ++p) {
              const int64_t k = s + l * P + p;
              const scalar_t a = aw[k];
              const Tap<scalar_t> t = make_tap<scalar_t>(lc[2 * k], lc[2 * k + 1], h, w);
              scalar_t g_attn = 0, g_ix = 0, g_iy = 0;
              for (int c = 0; c < 4; ++c) {
                if (t.offset[c] < 0) continue;
                const scalar_t* vp = vl + t.offset[c] * M * D;
                scalar_t* gvp = gvl + t.offset[c] * M * D;
                const scalar_t cw = a * t.w[c];
                scalar_t dot = 0;
                for (int64_t d = 0; d < D; ++d) {
                  dot += g[d] * vp[d];
                  gvp[d] += cw * g[d];
                }
                g_attn += t.w[c] * dot;
                g_ix += t.dwdx[c] * dot;
                g_iy += t.dwdy[c] * dot;
              }
              ga[k] = g_attn;
              gl[2 * k] = a * g_ix * static_cast<scalar_t>(w);  // d ix / d loc_x = W
              gl[2 * k + 1] = a * g_iy * static_cast<scalar_t>(h);
            }
          }
        }
      }
    });
  });
  return {grad_value, grad_loc, grad_attn};
}

// Registered as torch.ops.clock_distill.msda_forward / msda_backward (no pybind11: a lighter build).
TORCH_LIBRARY(clock_distill, m) {
  m.def("msda_forward(Tensor value, Tensor spatial_shapes, Tensor level_starts, Tensor sampling_locations, "
        "Tensor attention_weights) -> Tensor");
  m.def("msda_backward(Tensor value, Tensor spatial_shapes, Tensor level_starts, Tensor sampling_locations, "
        "Tensor attention_weights, Tensor grad_output) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(clock_distill, CPU, m) {
  m.impl("msda_forward", &ms_deform_attn_forward);
  m.impl("msda_backward", &ms_deform_attn_backward);
}
