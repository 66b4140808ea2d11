// cuda_bf16.h: emu's stand-in (see emu_float16.h).
#pragma once
#include "emu_float16.h"
