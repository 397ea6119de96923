#include "cpu/philox.h"  // header-only; this unit keeps the header compiled on its own
