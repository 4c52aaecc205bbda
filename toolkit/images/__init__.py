"""Images: the Docker engine client, the offline base image, the wheelhouse, builds, registry
logins and pushes, and the release records kept between commands."""
