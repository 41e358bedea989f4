export MY_APISERVER_ADDRESS="k8s.internal"
export MY_APISERVER_PORT=6443

# Create the client
kanidm system oauth2 create-public k8s Kubernetes "https://${MY_APISERVER_ADDRESS}:${MY_APISERVER_PORT}"

# Optionally, since Kubernetes has no way to initiate an authentication flow
#   set a landing page that users will hit if they click on the application in Kanidm
kanidm system oauth2 set-landing-url k8s "https://kubernetes.io/"

# Allow localhost redirects, so later our kubectl plugin can catch the tokens
#   by redirecting to itself listening locally.
kanidm system oauth2 enable-localhost-redirects k8s

# Create and map group
kanidm group create k8s_users
# Set the client to map the scopes we need the claims of
kanidm system oauth2 update-scope-map k8s k8s_users openid email profile groups

# Add our user
kanidm group add-members k8s_users $(whoami)

# Repeat this for another new group, k8s_admins

# Verify our work
kanidm system oauth2 get k8s
