// The emulated op sequences of bfloat16 images (sequences.h).
#include "launch.h"

PVF_EMULATED_SEQUENCES_OF(pvf::Storage::kBFloat16)
