# The portable (sm_80+) decode kernel's sources, relative to src/cuda. One instantiation file
# per head-dim family and cache kind (config.hpp: FLASHMFA_SM80_FAMILIES), so they compile in parallel.
set(FLASHMFA_SM80_SOURCES
  sm80/decode/decode.cu
  sm80/decode/decode_d576.cu
  sm80/decode/decode_d256.cu
  sm80/decode/decode_d128.cu
  sm80/decode/decode_d64.cu
  sm80/decode/decode_d576_fp8.cu
  sm80/decode/decode_d256_fp8.cu
  sm80/decode/decode_d128_fp8.cu
  sm80/decode/decode_d64_fp8.cu
)
