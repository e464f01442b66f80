enum CloudInitPlaceholder {}
