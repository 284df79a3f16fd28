int vox_cref_placeholder(void) { return 0; }
