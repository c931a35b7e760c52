// ArborKernels
