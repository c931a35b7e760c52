// ArborTestSupport
