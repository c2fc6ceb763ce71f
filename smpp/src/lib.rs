//! SMPP 3.4 links (work in progress).
