//! Prices per model, per million tokens, in the configured currency (`[pricing."<model>"]`). A
//! reply is priced by the longest configured name its model starts with, so
//! `claude-sonnet-4-5-20250929` takes `claude-sonnet-4-5`'s price. Models without a price count
//! tokens only, and say so.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::transcript::Tokens;

/// What a million tokens of each kind cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_write: f64,
    #[serde(default)]
    pub cache_read: f64,
}

/// The built-in profiles' models (list prices, USD).
pub fn defaults() -> BTreeMap<String, Price> {
    let price = |input, output, cache_write, cache_read| Price {
        input,
        output,
        cache_write,
        cache_read,
    };
    [
        ("claude-sonnet-4", price(3.0, 15.0, 3.75, 0.30)),
        ("claude-sonnet-4-5", price(3.0, 15.0, 3.75, 0.30)),
        ("claude-opus-4", price(15.0, 75.0, 18.75, 1.50)),
        ("claude-haiku-4-5", price(1.0, 5.0, 1.25, 0.10)),
        ("claude-3-5-haiku", price(0.80, 4.0, 1.0, 0.08)),
        ("glm-4.6", price(0.60, 2.20, 0.0, 0.11)),
    ]
    .into_iter()
    .map(|(model, price)| (model.to_owned(), price))
    .collect()
}

/// The price of `model`: the longest configured name it starts with (names compared without
/// case).
pub fn price_of<'a>(prices: &'a BTreeMap<String, Price>, model: &str) -> Option<&'a Price> {
    let model = model.to_ascii_lowercase();
    prices
        .iter()
        .filter(|(name, _)| model.starts_with(&name.to_ascii_lowercase()))
        .max_by_key(|(name, _)| name.len())
        .map(|(_, price)| price)
}

/// What `tokens` cost at `price`, in millionths of the currency (integers add up exactly).
pub fn cost_micros(price: &Price, tokens: &Tokens) -> i64 {
    // Per million tokens, in millionths: the price itself, per token.
    let micros = price.input * tokens.input as f64
        + price.output * tokens.output as f64
        + price.cache_write * tokens.cache_write as f64
        + price.cache_read * tokens.cache_read as f64;
    micros.round().clamp(0.0, i64::MAX as f64) as i64
}

/// Checks a price list: no negative, infinite or absurd price.
pub fn validate(prices: &BTreeMap<String, Price>) -> Result<(), String> {
    for (model, price) in prices {
        if model.trim().is_empty() {
            return Err("a model name is empty".into());
        }
        for value in [
            price.input,
            price.output,
            price.cache_write,
            price.cache_read,
        ] {
            if !value.is_finite() || !(0.0..=1_000_000.0).contains(&value) {
                return Err(format!(
                    "the price of {model} must be a number from 0 to 1000000 per million tokens"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_matching_name_prices_a_model() {
        let prices = defaults();
        assert_eq!(
            price_of(&prices, "claude-sonnet-4-5-20250929"),
            prices.get("claude-sonnet-4-5")
        );
        assert_eq!(
            price_of(&prices, "claude-sonnet-4-20250514"),
            prices.get("claude-sonnet-4")
        );
        assert_eq!(price_of(&prices, "GLM-4.6"), prices.get("glm-4.6"));
        assert_eq!(price_of(&prices, "gpt-5"), None);
    }

    #[test]
    fn cost_is_exact_in_millionths() {
        let price = defaults()["claude-sonnet-4-5"];
        let tokens = Tokens {
            input: 1_000_000,
            output: 1_000,
            cache_write: 0,
            cache_read: 10,
        };
        // $3 + $0.015 + $0.000003
        assert_eq!(cost_micros(&price, &tokens), 3_015_003);
    }

    #[test]
    fn prices_out_of_range_are_refused() {
        let mut prices = defaults();
        assert!(validate(&prices).is_ok());
        prices.insert(
            "x".into(),
            Price {
                input: -1.0,
                output: 0.0,
                cache_write: 0.0,
                cache_read: 0.0,
            },
        );
        assert!(validate(&prices).is_err());
    }
}
