//! The signing region: configured, else what the AWS SDK finds
//! (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`), else the one
//! in an MSK broker's host name.

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::ProvideRegion;
use aws_config::profile::region::ProfileFileRegionProvider;

/// Region from `AWS_REGION`, `AWS_DEFAULT_REGION`, then the `region` of the
/// profile (`profile`, else `AWS_PROFILE`, else `default`). IMDS is not
/// asked: off EC2 it costs a timeout on every connection.
/// Blank variables count as unset, as the AWS CLI takes them.
pub async fn resolve_region(profile: Option<&str>) -> Option<String> {
    let set = |r: &String| !r.trim().is_empty();
    if let Some(r) = EnvironmentVariableRegionProvider::new()
        .region()
        .await
        .map(|r| r.to_string())
        .filter(set)
    {
        return Some(r);
    }
    let mut from_profile = ProfileFileRegionProvider::builder();
    if let Some(p) = profile.map(str::to_owned).or_else(blank_profile_as_default) {
        from_profile = from_profile.profile_name(p);
    }
    from_profile
        .build()
        .region()
        .await
        .map(|r| r.to_string())
        .filter(set)
}

/// `default` when `AWS_PROFILE` is set but blank, which the AWS CLI takes as
/// unset (the SDK would look for a profile named ""); `None` otherwise, for
/// the SDK's own choice.
pub(super) fn blank_profile_as_default() -> Option<String> {
    std::env::var("AWS_PROFILE")
        .is_ok_and(|p| p.trim().is_empty())
        .then(|| "default".to_owned())
}

/// The region in an MSK broker host name (`b-1.x.y.c2.kafka.us-east-1.amazonaws.com`,
/// `boot-x.c1.kafka-serverless.us-east-1.amazonaws.com`).
pub fn region_from_broker_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let i = labels
        .iter()
        .position(|l| *l == "kafka" || *l == "kafka-serverless")?;
    let region = labels.get(i + 1)?;
    (labels.get(i + 2) == Some(&"amazonaws") && !region.is_empty()).then(|| (*region).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_host_region() {
        assert_eq!(
            region_from_broker_host("b-1.demo.abc.c2.kafka.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_broker_host("boot-abc.c1.kafka-serverless.us-east-2.amazonaws.com")
                .as_deref(),
            Some("us-east-2")
        );
        assert_eq!(region_from_broker_host("localhost"), None);
    }
}
