/* The layer-to-group map behind model.c, exported for its test. */
#ifndef ZF_MODEL_INTERNAL_H
#define ZF_MODEL_INTERNAL_H

#include "common/model.h"

zf_group zf_lin_group(zf_lin l);

#endif
