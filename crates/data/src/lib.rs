//! tapestry-data
