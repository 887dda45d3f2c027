//! A visitor's identity on the client side: a stable id and a display name.

use fake::faker::name::en::Name;
use fake::Fake;
use rand::Rng;

/// A fresh random visitor id (16 characters of `A-Za-z0-9`), to be stored
/// and reused so reconnects and restarts are the same person.
pub fn new_visitor_id() -> String {
    let mut rng = rand::rng();
    (0..16)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect()
}

/// A random fake display name, made once and then kept.
pub fn random_name() -> String {
    Name().fake()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_and_names() {
        let a = super::new_visitor_id();
        assert_eq!(a.len(), 16);
        assert_ne!(a, super::new_visitor_id());
        assert!(super::random_name().contains(' '));
    }
}
