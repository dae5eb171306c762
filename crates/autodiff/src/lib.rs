//! tapestry-autodiff
