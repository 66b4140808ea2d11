// cuda_pipeline.h: emu's stand-in; the primitives are in cuda_pipeline_primitives.h.
#pragma once
#include "cuda_pipeline_primitives.h"
