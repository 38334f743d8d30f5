"""Amazon Rekognition-compatible API: AWS JSON 1.1 at `POST /`, SigV4-verified, so boto3 and
the AWS CLI work unchanged with `endpoint_url`. The README's Rekognition section lists what
is covered."""

from serve_app.api.rekognition.protocol import RekognitionEndpoint, rekognition_route

__all__ = ["RekognitionEndpoint", "rekognition_route"]
