//! Data objects: plain, file, array, index and JS values, with their stream encoding.
