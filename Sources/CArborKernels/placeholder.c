#include "arbor_kernels.h"
