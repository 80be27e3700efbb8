//! The AWS configuration of this process (region, credentials, endpoints
//! from the standard chain), read once and shared by every AWS client here
//! but the Kinesis producers', which keep their own (see `kinesis_writer`).

/// The configuration, read from the environment the first time it is asked for.
pub async fn load() -> aws_config::SdkConfig {
    static CONFIG: tokio::sync::OnceCell<aws_config::SdkConfig> =
        tokio::sync::OnceCell::const_new();
    CONFIG.get_or_init(aws_config::load_from_env).await.clone()
}
