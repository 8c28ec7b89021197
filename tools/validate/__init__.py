"""Offline validation of the deployment artefacts in deploy/ and k8s/ (`make validate-deploy`)."""
