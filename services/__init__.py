"""The campaign services: api, scheduler, dispatcher, tracker."""
