// The emulated op sequences of float32 images (sequences.h).
#include "launch.h"

PVF_EMULATED_SEQUENCES_OF(pvf::Storage::kFloat32)
