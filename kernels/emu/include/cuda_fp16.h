// cuda_fp16.h: emu's stand-in (emu_float16.h has __half and __nv_bfloat16, as CUDA's cuda_bf16.h
// includes cuda_fp16.h).
#pragma once
#include "emu_float16.h"
