/*
 * missing-symbol — a shared object that exports no descriptor, so loader
 * tests can check the "missing symbol" error.  Its one function is hidden.
 */
__attribute__((visibility("hidden"))) int missing_symbol_unused(void);

__attribute__((visibility("hidden"))) int missing_symbol_unused(void) { return 0; }
