"""The Rekognition-compatible API: request checks, authentication, the job registry."""
