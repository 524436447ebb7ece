// $3 dequantization kernels (HIP and CUDA). Being written: see the GPU issue.
#include "qf_portability.h"
