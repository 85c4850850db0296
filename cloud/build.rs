//! Compiles every page template under `templates/` into the binary: a page added there
//! is available to `http::pages::render` by its file name, with no list to keep.

fn main() {
    minijinja_embed::embed_templates!("templates");
}
