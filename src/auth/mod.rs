//! Authentication: password hashing, access tokens, and the security scheme that protected
//! operations take as a parameter.

pub mod keys;
pub mod password;
pub mod refresh;
pub mod scheme;
pub mod throttle;
pub mod token;

pub use keys::SigningKeys;
pub use password::{HashError, PasswordHasher, Verification};
pub use refresh::{PresentedRefreshToken, RefreshTokens};
pub use scheme::{Authenticated, OAuth2, OAuthScope, authenticate};
pub use throttle::{Admission, AttemptKeys, LoginThrottle};
pub use token::{AccessTokens, InvalidToken, IssueError, IssuedToken, VerifiedToken, VerifyError};
