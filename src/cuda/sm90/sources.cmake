# The Hopper (sm_90a only) decode kernel's sources, relative to src/cuda. One instantiation file
# per dtype and cache kind (decode/config.hpp: FLASHMFA_SM90_KERNELS, FLASHMFA_SM90_FP8_KERNELS), so they compile in parallel. These files
# use wgmma and setmaxnreg: they must be compiled for -gencode=arch=compute_90a,code=sm_90a
# alone (never for sm_80 or plain sm_90).
set(FLASHMFA_SM90_SOURCES
  sm90/decode/launch.cu
  sm90/decode/kernel_bf16.cu
  sm90/decode/kernel_f16.cu
  sm90/decode/kernel_fp8_bf16.cu
  sm90/decode/kernel_fp8_f16.cu
  sm90/mla/kernel_bf16.cu
  sm90/mla/kernel_f16.cu
  sm90/mla/kernel_fp8_bf16.cu
  sm90/mla/kernel_fp8_f16.cu
)
