//! Where the bundled data sets' bytes come from. Natively they are compiled into the binary,
//! so the CLI and the app need no files. In the browser they are separate files the page
//! fetches (`data/<set>/...` next to the wasm), so the wasm stays small: the web entry point
//! hands them over with [`provide`].

use std::borrow::Cow;

use anyhow::Result;

use crate::data::Bundled;

/// The bytes of a set's two files: images, labels.
pub type Pair = (Cow<'static, [u8]>, Cow<'static, [u8]>);

/// The two gzipped IDX files of a bundled set: images, labels.
pub const FILES: [&str; 2] = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];

/// (images, labels) bytes of `set`.
#[cfg(not(target_arch = "wasm32"))]
pub fn files(set: Bundled) -> Result<Pair> {
    let (images, labels): (&[u8], &[u8]) = match set {
        Bundled::Mnist => (
            include_bytes!("../../../assets/mnist/t10k-images-idx3-ubyte.gz"),
            include_bytes!("../../../assets/mnist/t10k-labels-idx1-ubyte.gz"),
        ),
        Bundled::FashionMnist => (
            include_bytes!("../../../assets/fashion-mnist/t10k-images-idx3-ubyte.gz"),
            include_bytes!("../../../assets/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
        ),
    };
    Ok((Cow::Borrowed(images), Cow::Borrowed(labels)))
}

#[cfg(target_arch = "wasm32")]
thread_local! {
    static FETCHED: std::cell::RefCell<Vec<(Bundled, Pair)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// (images, labels) bytes of `set`, once the page has fetched them.
#[cfg(target_arch = "wasm32")]
pub fn files(set: Bundled) -> Result<Pair> {
    FETCHED.with(|f| {
        f.borrow()
            .iter()
            .find(|(s, _)| *s == set)
            .map(|(_, pair)| pair.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("{} is still downloading: try again in a moment", set.name())
            })
    })
}

/// Hands the page's download of `set` over (browser).
#[cfg(target_arch = "wasm32")]
pub fn provide(set: Bundled, images: Vec<u8>, labels: Vec<u8>) {
    let pair = (Cow::Owned(images), Cow::Owned(labels));
    FETCHED.with(|f| f.borrow_mut().push((set, pair)));
}

/// The folder the page serves `set`'s files from, relative to the page.
pub fn url_dir(set: Bundled) -> String {
    format!("data/{}", set.name())
}
