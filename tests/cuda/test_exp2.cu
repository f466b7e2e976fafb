// The softmax's exponentials as device code: exp2_poly (the FMA-pipe 2^x that the Hopper
// softmax uses for part of each whole tile's numerators) against the double-precision 2^x, and
// the SFU's exp2_approx beside it for scale. Decode accuracy as a whole is tested against the
// reference in test_decode.cpp / test_hopper.cpp; this pins the function's own error and range.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <cuda_runtime.h>

#include "cuda/common/running_max.cuh"
#include "gpu_problem.hpp"

namespace {

__global__ void exp2_kernel(const float* x, float* poly, float* sfu, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  poly[i] = flashmfa::cuda::exp2_poly(x[i]);
  sfu[i] = flashmfa::cuda::exp2_approx(x[i]);
}

struct Exp2Results {
  std::vector<float> x, poly, sfu;
};

Exp2Results run(std::vector<float> x) {
  const int n = int(x.size());
  float *dx = nullptr, *dp = nullptr, *ds = nullptr;
  EXPECT_EQ(cudaMalloc(&dx, n * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&dp, n * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&ds, n * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemset(dp, 0xff, n * sizeof(float)), cudaSuccess);  // NaN: every slot written
  exp2_kernel<<<(n + 255) / 256, 256>>>(dx, dp, ds, n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  Exp2Results r{std::move(x), std::vector<float>(n), std::vector<float>(n)};
  EXPECT_EQ(cudaMemcpy(r.poly.data(), dp, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(r.sfu.data(), ds, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dx), cudaFree(dp), cudaFree(ds);
  return r;
}

// Every numerator a softmax can produce: x from -125 up to the running max's slack (2^8), on a
// grid fine enough to see the cubic's error curve (plus its nodes' neighbourhood at +-0.5).
TEST(CudaExp2, PolyWithinItsBoundOverTheSoftmaxRange) {
  SKIP_WITHOUT_GPU();
  std::vector<float> x;
  for (double v = -125.0; v <= 8.5; v += 1.0 / 1024 + 1e-6) x.push_back(float(v));
  for (int j = -124; j <= 8; ++j)
    for (float d : {-0.5f, -0.4999f, 0.4999f, 0.5f}) x.push_back(float(j) + d);
  const Exp2Results r = run(std::move(x));
  double worst = 0, worst_sfu = 0;
  for (size_t i = 0; i < r.x.size(); ++i) {
    const double ref = std::exp2(double(r.x[i]));
    ASSERT_TRUE(std::isfinite(r.poly[i])) << "x = " << r.x[i];
    worst = std::max(worst, std::abs(r.poly[i] - ref) / ref);
    if (r.x[i] > -126) worst_sfu = std::max(worst_sfu, std::abs(r.sfu[i] - ref) / ref);
  }
  EXPECT_LT(worst, 8e-5) << "documented bound 7.5e-5 (bf16 half ulp 2^-9 = 1.95e-3)";
  EXPECT_GT(worst, 1e-6) << "no error at all: the polynomial did not run";
  EXPECT_LT(worst_sfu, 1e-6);
}

// Below the range (scores far under the row max, -inf) the result is tiny and finite: never the
// wrapped exponent (2^j added to the bits of a j < -126 would read as a huge number or NaN).
TEST(CudaExp2, PolyClampsBelowItsRange) {
  SKIP_WITHOUT_GPU();
  const Exp2Results r = run({-125.5f, -126.f, -200.f, -1e4f, -1e30f, -INFINITY});
  for (size_t i = 0; i < r.x.size(); ++i) {
    EXPECT_GE(r.poly[i], 0.f) << "x = " << r.x[i];
    EXPECT_LT(r.poly[i], 4e-38f) << "x = " << r.x[i];  // 2^-125 = 2.35e-38
    EXPECT_EQ(r.sfu[i] == 0.f || r.sfu[i] < 4e-38f, true);
  }
  EXPECT_EQ(r.sfu.back(), 0.f);  // exp2_approx(-inf) = 0, which masked columns rely on
}

}  // namespace
