//! How both binaries (`mailvault`, `kmsrecover`) print a failed run: the
//! error, the causes that add something to it, and the library's hint.

/// Prints `err` to stderr.
pub fn error(err: &anyhow::Error) {
    let top = err.to_string();
    eprintln!("error: {top}");
    // Library errors already name their source; print only causes that add something.
    for cause in err
        .chain()
        .skip(1)
        .map(ToString::to_string)
        .filter(|c| !top.contains(c.as_str()))
    {
        eprintln!("  caused by: {cause}");
    }
    let hint = hint(err);
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

/// The library's advice for an error, whichever library it comes from.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.downcast_ref::<mailvault::Error>()
        .and_then(mailvault::Error::hint)
        .or_else(|| {
            err.downcast_ref::<mailvault_recover::Error>()
                .and_then(mailvault_recover::Error::hint)
        })
        .or_else(|| {
            err.downcast_ref::<mailvault_repo::Error>()
                .and_then(mailvault_repo::Error::hint)
        })
}
