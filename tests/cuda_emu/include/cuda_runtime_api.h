/* CUDA emulation: the runtime API header by its other name. */
#include "cuda_runtime.h"
